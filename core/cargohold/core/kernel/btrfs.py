"""btrfs through its ioctls: subvolumes, snapshots, read-only flags and quota groups.

The one btrfs helper of the project: the ``btrfs`` snapshotter, the ``local``
driver's quotas and the ``btrfs`` array backend all use it, and none runs the
``btrfs`` command. Each call takes paths and opens what it needs itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cargohold.core.kernel.libc import check, libc

BTRFS_SUPER_MAGIC = 0x9123683E
FIRST_FREE_OBJECTID = 256  # the inode number of every subvolume's root directory
NO_LIMIT = 2**64 - 1  # what the kernel reads as "clear this limit"

_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0x94 << 8) | nr


_VOL_ARGS = 4096  # struct btrfs_ioctl_vol_args and _v2 are both 4096 bytes
IOC_SUBVOL_CREATE = _ioc(_IOC_WRITE, 14, _VOL_ARGS)
IOC_SNAP_DESTROY = _ioc(_IOC_WRITE, 15, _VOL_ARGS)
IOC_INO_LOOKUP = _ioc(_IOC_READ | _IOC_WRITE, 18, 4096)
IOC_SNAP_CREATE_V2 = _ioc(_IOC_WRITE, 23, _VOL_ARGS)
IOC_SUBVOL_GETFLAGS = _ioc(_IOC_READ, 25, 8)
IOC_SUBVOL_SETFLAGS = _ioc(_IOC_WRITE, 26, 8)
IOC_FS_INFO = _ioc(_IOC_READ, 31, 1024)
IOC_QUOTA_CTL = _ioc(_IOC_READ | _IOC_WRITE, 40, 16)
IOC_QGROUP_LIMIT = _ioc(_IOC_READ, 43, 48)
IOC_QUOTA_RESCAN_WAIT = _ioc(0, 46, 0)
SUBVOL_RDONLY = 1 << 1
_QUOTA_CTL_ENABLE = 1
_QGROUP_LIMIT_MAX_RFER = 1
_NAME_MAX = 4039  # v2 args: 4040 bytes of name, NUL included


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 256)]


@contextmanager
def _open_dir(path: Path | str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def filesystem_magic(path: Path | str) -> int:
    """statfs(2)'s ``f_type`` of the filesystem holding ``path``."""
    buf = _StatFs()
    check(libc.statfs(os.fsencode(path), ctypes.byref(buf)), "statfs", path)
    return int(buf.f_type) & 0xFFFFFFFF


def is_btrfs(path: Path | str) -> bool:
    return filesystem_magic(path) == BTRFS_SUPER_MAGIC


def is_subvolume(path: Path | str) -> bool:
    """True if ``path`` is the top of a btrfs subvolume (False if it does not exist)."""
    try:
        return os.stat(path).st_ino == FIRST_FREE_OBJECTID and is_btrfs(path)
    except FileNotFoundError:
        return False


def _name_args(name: str, offset: int, limit: int) -> bytearray:
    encoded = os.fsencode(name)
    if len(encoded) > limit or not encoded or b"/" in encoded:
        raise OSError(errno.ENAMETOOLONG if encoded else errno.EINVAL, f"bad name: {name!r}")
    buf = bytearray(_VOL_ARGS)
    buf[offset : offset + len(encoded)] = encoded
    return buf


def create_subvolume(path: Path) -> None:
    """Make ``path`` (which must not exist) a new empty subvolume."""
    with _open_dir(path.parent) as parent:
        fcntl.ioctl(parent, IOC_SUBVOL_CREATE, _name_args(path.name, 8, 4087))


def snapshot(source: Path, dest: Path, *, read_only: bool = False) -> None:
    """Make ``dest`` (which must not exist) a snapshot of subvolume ``source``.

    Constant time: the two share every block until either is written.
    """
    args = _name_args(dest.name, 56, _NAME_MAX)  # fd, transid, flags, 4 x u64, then name
    with _open_dir(source) as src, _open_dir(dest.parent) as parent:
        struct.pack_into("=qQQ", args, 0, src, 0, SUBVOL_RDONLY if read_only else 0)
        fcntl.ioctl(parent, IOC_SNAP_CREATE_V2, args)


def set_read_only(path: Path, read_only: bool = True) -> None:
    """Mark the subvolume ``path`` read-only (or writable again)."""
    with _open_dir(path) as fd:
        buf = bytearray(8)
        fcntl.ioctl(fd, IOC_SUBVOL_GETFLAGS, buf)
        (flags,) = struct.unpack("=Q", buf)
        flags = flags | SUBVOL_RDONLY if read_only else flags & ~SUBVOL_RDONLY
        fcntl.ioctl(fd, IOC_SUBVOL_SETFLAGS, bytearray(struct.pack("=Q", flags)))


def is_read_only(path: Path) -> bool:
    with _open_dir(path) as fd:
        buf = bytearray(8)
        fcntl.ioctl(fd, IOC_SUBVOL_GETFLAGS, buf)
    return bool(struct.unpack("=Q", buf)[0] & SUBVOL_RDONLY)


def delete_subvolume(path: Path) -> None:
    """Delete the subvolume ``path`` and its data (read-only ones too).

    Its limit is cleared first and the qgroup itself left to the kernel: it
    drops it once the cleaner has freed the data (older kernels leave an empty
    stale one, harmless). Destroying a qgroup that still counts bytes marks
    every qgroup on the filesystem inconsistent, and an inconsistent
    filesystem enforces no limit at all.
    """
    with contextlib.suppress(OSError):  # quotas off: no limit to clear
        limit(path, None)
    with _open_dir(path.parent) as parent:
        fcntl.ioctl(parent, IOC_SNAP_DESTROY, _name_args(path.name, 8, 4087))
    # No BTRFS_IOC_START_SYNC after it (as `btrfs subvolume delete` without -c): on
    # Linux 6.18 it was seen to wait forever, uninterruptibly, for a commit that never
    # started. The cleaner frees the space after the next periodic commit (30 s).


def subvolume_id(path: Path) -> int:
    """The id of the subvolume holding ``path`` (its qgroup is ``0/<id>``)."""
    args = bytearray(4096)
    struct.pack_into("=QQ", args, 0, 0, FIRST_FREE_OBJECTID)  # treeid 0: the fd's own tree
    with _open_dir(path) as fd:
        fcntl.ioctl(fd, IOC_INO_LOOKUP, args)
    return int(struct.unpack_from("=Q", args, 0)[0])


def filesystem_uuid(path: Path | str) -> str:
    """The UUID of the btrfs filesystem holding ``path``."""
    with _open_dir(path) as fd:
        info = bytearray(1024)
        fcntl.ioctl(fd, IOC_FS_INFO, info)
    raw = info[16:32].hex()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _qgroups_dir(path: Path | str) -> Path:
    # the kernel adds this directory when quotas are enabled, and drops it when disabled
    return Path("/sys/fs/btrfs", filesystem_uuid(path), "qgroups")


def quotas_enabled(path: Path | str) -> bool:
    return _qgroups_dir(path).is_dir()


def enable_quotas(path: Path | str) -> None:
    """Turn quota groups on for the filesystem holding ``path`` and wait for the scan."""
    with _open_dir(path) as fd:
        fcntl.ioctl(fd, IOC_QUOTA_CTL, bytearray(struct.pack("=QQ", _QUOTA_CTL_ENABLE, 0)))
        fcntl.ioctl(fd, IOC_QUOTA_RESCAN_WAIT)


def limit(path: Path, size: int | None) -> None:
    """Limit the bytes the subvolume ``path`` references to ``size`` (None: no limit)."""
    value = NO_LIMIT if size is None else size
    # qgroupid 0 means "the subvolume this descriptor is in"
    args = bytearray(struct.pack("=QQQQQQ", 0, _QGROUP_LIMIT_MAX_RFER, value, 0, 0, 0))
    with _open_dir(path) as fd:
        fcntl.ioctl(fd, IOC_QGROUP_LIMIT, args)


def referenced(path: Path) -> int | None:
    """Bytes the subvolume ``path`` references, from its qgroup; None if quotas are off."""
    entry = _qgroups_dir(path) / f"0_{subvolume_id(path)}" / "referenced"
    try:
        return int(entry.read_text())
    except (FileNotFoundError, ValueError):
        return None


def limit_of(path: Path) -> int | None:
    """The referenced-bytes limit of the subvolume ``path``; None if it has none."""
    entry = _qgroups_dir(path) / f"0_{subvolume_id(path)}" / "max_referenced"
    try:
        value = int(entry.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return None if value in (0, NO_LIMIT) else value
