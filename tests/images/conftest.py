from tests.snapshotters.loopfs import btrfs_dir, btrfs_mount

__all__ = ["btrfs_dir", "btrfs_mount"]
