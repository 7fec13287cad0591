"""Tests of the storage arrays: the block-volume driver and the loop and btrfs arrays."""
