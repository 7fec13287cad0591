"""The copy snapshotter shares file blocks (reflinks) where the filesystem can."""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from cargohold.drivers.snapshotters.copy import _copy_tree_python, copy_tree

pytestmark = pytest.mark.root

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_HEADER = struct.Struct("=QQLLLL")  # struct fiemap
_EXTENT = struct.Struct("=QQQQQLLLL")  # struct fiemap_extent
_MAX_EXTENTS = 32


def extents_shared(path: Path) -> list[bool]:
    """For each extent of ``path`` (FIEMAP), whether its blocks are shared with another file."""
    request = bytearray(_HEADER.size + _EXTENT.size * _MAX_EXTENTS)
    _HEADER.pack_into(request, 0, 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, _MAX_EXTENTS, 0)
    with open(path, "rb") as f:
        fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, request)
    mapped = _HEADER.unpack_from(request)[3]
    flags = [
        _EXTENT.unpack_from(request, _HEADER.size + i * _EXTENT.size)[5] for i in range(mapped)
    ]
    return [bool(f & FIEMAP_EXTENT_SHARED) for f in flags]


@pytest.mark.parametrize("copy", [copy_tree, _copy_tree_python], ids=["cp", "ficlone"])
def test_copies_on_btrfs_share_blocks(btrfs_dir: Path, copy: Callable[[Path, Path], None]) -> None:
    source = btrfs_dir / "layer"
    (source / "sub").mkdir(parents=True)
    data = os.urandom(1 << 20)
    (source / "sub" / "big").write_bytes(data)
    copy(source, btrfs_dir / "snapshot")
    copied = btrfs_dir / "snapshot" / "sub" / "big"
    assert copied.read_bytes() == data
    shared = extents_shared(copied)
    assert shared and all(shared)
    # the same bytes written, not cloned, share nothing (the check means something)
    (btrfs_dir / "written").write_bytes(data)
    assert not any(extents_shared(btrfs_dir / "written"))
