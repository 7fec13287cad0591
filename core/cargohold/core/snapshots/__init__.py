"""Snapshots: the core's snapshotter over a snapshot driver, and their registry."""
