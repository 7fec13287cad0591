"""Suites for implementers: the volume-driver, snapshotter and block-array conformance
suites, and the benchmark workloads, shipped beside the contracts they check."""
