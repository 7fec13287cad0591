"""Block devices and the filesystems on them: size, superblocks, freeze and thaw.

`identify` reads the superblocks of the filesystems cargohold makes (ext4,
xfs, btrfs) straight from the device, so checking which filesystem a volume
holds costs a read instead of a blkid(8) process. `frozen` holds a mounted
filesystem still (``FIFREEZE``), so a copy of its device taken meanwhile is
consistent, as after a clean unmount.
"""

from __future__ import annotations

import fcntl
import os
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BLKGETSIZE64 = 0x80081272
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878

_EXT_MAGIC = 0xEF53
_EXT_INCOMPAT_RECOVER = 0x4  # the journal holds transactions not yet written back
_XFS_MAGIC = b"XFSB"
_BTRFS_MAGIC = b"_BHRfS_M"


@dataclass(frozen=True)
class Filesystem:
    """A filesystem found on a device by its superblock."""

    type: str  # ext4 (also ext2/3), xfs, btrfs
    uuid: str
    #: the journal was not replayed: the filesystem was not cleanly unmounted
    needs_recovery: bool = False


def size(device: Path | str) -> int:
    """The device's size in bytes."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, BLKGETSIZE64, buf)
    finally:
        os.close(fd)
    return int(struct.unpack("=Q", buf)[0])


def identify(device: Path | str) -> Filesystem | None:
    """The ext4, xfs or btrfs filesystem on ``device``, or None if none of them is there.

    None does not mean the device is empty: use blkid(8) for everything else.
    """
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, 2048, 0)
        btrfs = os.pread(fd, 4096, 65536)
    finally:
        os.close(fd)
    if len(head) >= 2048:
        (ext_magic,) = struct.unpack_from("<H", head, 1024 + 56)
        if ext_magic == _EXT_MAGIC:
            (incompat,) = struct.unpack_from("<I", head, 1024 + 96)
            raw = head[1024 + 104 : 1024 + 120]
            return Filesystem(
                "ext4", str(uuid.UUID(bytes=raw)), bool(incompat & _EXT_INCOMPAT_RECOVER)
            )
        if head[:4] == _XFS_MAGIC:
            return Filesystem("xfs", str(uuid.UUID(bytes=head[32:48])))
    if len(btrfs) >= 80 and btrfs[64:72] == _BTRFS_MAGIC:
        return Filesystem("btrfs", str(uuid.UUID(bytes=btrfs[32:48])))
    return None


def is_blank(device: Path | str, probe: int = 1024**2) -> bool:
    """True if the first ``probe`` bytes and the last MiB of ``device`` are all zero.

    Where partition tables, LVM, RAID and filesystem signatures live: a blank
    device holds nothing anyone made.
    """
    total = size(device)
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for offset in {0, max(0, total - probe)}:
            block = os.pread(fd, probe, offset)
            if block.count(0) != len(block):
                return False
    finally:
        os.close(fd)
    return True


@contextmanager
def frozen(mountpoint: Path | str) -> Iterator[None]:
    """Hold the filesystem mounted on ``mountpoint`` still: writes wait until thawed."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
        try:
            yield
        finally:
            fcntl.ioctl(fd, FITHAW, 0)
    finally:
        os.close(fd)
