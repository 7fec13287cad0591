"""The contracts room: driver and snapshotter contracts, hook specs, errors, value types.

Everything a plugin author codes against. It imports nothing else of cargohold.
"""
