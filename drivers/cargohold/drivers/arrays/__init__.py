"""Storage arrays: the generic block-volume driver and the ``loop`` and ``btrfs`` arrays."""
