"""Size limits for plain directories, enforced by the kernel.

The ``local`` driver's ``size`` option needs a limit the kernel enforces on
one directory tree. Two mechanisms give one, chosen by the filesystem that
holds the driver's root:

btrfs with quotas enabled (``btrfs quota enable MOUNTPOINT``)
    The volume's data directory is a subvolume with a qgroup limit on the
    bytes it references. Writing past it fails with EDQUOT. Subvolume ids are
    never reused by btrfs, so two volumes never share a qgroup.
xfs mounted with ``prjquota``/``pquota``, ext4 with the ``project`` and ``quota`` features
mounted with ``prjquota``
    The data directory gets a project id of its own, inherited by everything
    created inside it (``PROJINHERIT``), and that project gets a hard block
    limit. Writing past it fails with ENOSPC (xfs) or EDQUOT (ext4).

How project ids are chosen, so two volumes never share one: under an
``flock`` on ``<driver root>/.project-ids.lock`` (one allocation at a time per
state directory) the lowest id from `FIRST_PROJECT_ID` up is taken whose
project, on that filesystem, holds no inodes, no bytes and no limits; so an id
used by anything else there (another state directory, ``/etc/projects``) is
skipped. After setting it on the still-empty directory the project's inode
count is read again: exactly one (that directory) proves no other process
claimed the id meanwhile; otherwise the claim is undone and the next id
tried. The id is kept only on the directory itself (its fsxattr), where
`remove_limited_dir` reads it back to clear the limit. Removing a volume
clears its project's limits, so the id becomes free again.

We never turn quotas on: that is a filesystem-wide decision with a cost,
left to the administrator. Where neither mechanism is on, `limiter_for`
raises `NotSupported` saying what to do.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from cargohold.core import NotSupported
from cargohold.core.kernel import btrfs, mounts
from cargohold.core.kernel.libc import libc, raise_errno

FIRST_PROJECT_ID = 100_000
_MAX_PROJECT_ID = 2**32 - 2

Kind = Literal["btrfs", "project"]


@contextmanager
def _open_dir(path: Path | str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def limiter_for(root: Path) -> Kind:
    """The mechanism that can limit a directory under ``root``, or `NotSupported`."""
    entry = mounts.mount_of(root)
    if entry.fstype == "btrfs":
        if btrfs.quotas_enabled(root):
            return "btrfs"
        how = f"enable quotas on it: btrfs quota enable {entry.target}"
    elif entry.fstype in ("xfs", "ext4"):
        if _project_quota_enforced(root, entry):
            return "project"
        how = (
            "mount it with project quotas (xfs: -o prjquota; ext4: mkfs with "
            "-O quota,project, then -o prjquota)"
        )
    else:
        how = "put the state directory on btrfs with quotas, or on xfs mounted with prjquota"
    raise NotSupported(
        f"option size needs a kernel-enforced quota, and {root} is on {entry.fstype} "
        f"({entry.target}) without one: {how}; "
        "or use -o type=tmpfs -o device=tmpfs -o size=SIZE for a memory-backed volume"
    )


def create_limited_dir(directory: Path, size: int, kind: Kind) -> None:
    """Make ``directory`` (or keep it, if it exists) and limit it to ``size`` bytes."""
    if kind == "btrfs":
        if not directory.exists():
            btrfs.create_subvolume(directory)
        elif not btrfs.is_subvolume(directory):
            raise NotSupported(
                f"{directory} exists as a plain directory, not a subvolume: it cannot get a "
                "size limit. Remove the volume and create it again"
            )
        btrfs.limit(directory, size)
    else:
        directory.mkdir(mode=0o755, exist_ok=True)
        project = _own_project_id(directory)
        if project == 0:
            project = _claim_project_id(directory)
        _set_project_limit(directory, project, size)


def remove_limited_dir(directory: Path) -> None:
    """Delete ``directory`` and everything in it, and drop its limit."""
    if not directory.exists():
        return
    if btrfs.is_subvolume(directory):
        btrfs.delete_subvolume(directory)
        return
    project = _own_project_id(directory)
    shutil.rmtree(directory)
    if project:
        with contextlib.suppress(OSError):  # quotas turned off since: no limit to clear
            _set_project_limit(directory.parent, project, 0)


# -- project quotas (xfs, ext4) ------------------------------------------------

_FS_IOC_FSGETXATTR = 0x801C581F
_FS_IOC_FSSETXATTR = 0x401C5820
_FS_XFLAG_PROJINHERIT = 0x200
_FSXATTR = struct.Struct("=IIIII8x")  # xflags, extsize, nextents, projid, cowextsize

_PRJQUOTA = 2
_Q_GETQUOTA = 0x800007
_Q_SETQUOTA = 0x800008
_Q_XGETQSTATV = (ord("X") << 8) + 8
_FS_QUOTA_PDQ_ENFD = 1 << 5
_QIF_BLIMITS = 1
_QIF_ILIMITS = 4
# if_dqblk: bhardlimit, bsoftlimit, curspace, ihardlimit, isoftlimit, curinodes,
# btime, itime (u64 each), valid (u32); block limits count KiB.
_DQBLK = struct.Struct("=QQQQQQQQI4x")
_SYS_QUOTACTL_FD = 443


def _quotactl(path: Path, command: int, qid: int, buf: bytearray) -> None:
    cmd = (command << 8) | _PRJQUOTA
    address = (ctypes.c_char * len(buf)).from_buffer(buf)
    with _open_dir(path) as fd:
        qid_arg = ctypes.c_uint(qid)
        if libc.syscall(ctypes.c_long(_SYS_QUOTACTL_FD), fd, cmd, qid_arg, address) == 0:
            return
    if ctypes.get_errno() != errno.ENOSYS:
        raise_errno("quotactl", path)
    # kernels before 5.14: the classic call names the filesystem's block device
    device = mounts.mount_of(path).source
    quotactl = libc.quotactl
    quotactl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p]
    if quotactl(cmd, os.fsencode(device), qid, ctypes.addressof(address)) != 0:
        raise_errno("quotactl", device)


def _project_quota_enforced(path: Path, entry: mounts.MountEntry) -> bool:
    if not any(opt in ("prjquota", "pquota", "pqnoenforce") for opt in entry.super_options):
        return False
    stat = bytearray(512)
    stat[0] = 1  # FS_QSTATV_VERSION1
    try:
        _quotactl(path, _Q_XGETQSTATV, 0, stat)
    except OSError:
        return False
    (flags,) = struct.unpack_from("=H", stat, 2)
    return bool(flags & _FS_QUOTA_PDQ_ENFD)


def _project_id(path: Path) -> int:
    buf = bytearray(_FSXATTR.size)
    with _open_dir(path) as fd:
        fcntl.ioctl(fd, _FS_IOC_FSGETXATTR, buf)
    return int(_FSXATTR.unpack(buf)[3])


def _own_project_id(directory: Path) -> int:
    """The directory's project id, or 0 if it has none of its own (only its parent's)."""
    project = _project_id(directory)
    return 0 if project == _project_id(directory.parent) else project


def _set_project_id(path: Path, project: int) -> None:
    buf = bytearray(_FSXATTR.size)
    with _open_dir(path) as fd:
        fcntl.ioctl(fd, _FS_IOC_FSGETXATTR, buf)
        xflags, extsize, nextents, _, cow = _FSXATTR.unpack(buf)
        inherit = xflags | _FS_XFLAG_PROJINHERIT if project else xflags & ~_FS_XFLAG_PROJINHERIT
        fcntl.ioctl(
            fd,
            _FS_IOC_FSSETXATTR,
            bytearray(_FSXATTR.pack(inherit, extsize, nextents, project, cow)),
        )


def _project_usage(path: Path, project: int) -> tuple[int, int, bool]:
    """(bytes, inodes, has limits) of ``project`` on the filesystem holding ``path``."""
    buf = bytearray(_DQBLK.size)
    try:
        _quotactl(path, _Q_GETQUOTA, project, buf)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ESRCH):  # no such project yet
            return 0, 0, False
        raise
    bhard, bsoft, space, ihard, isoft, inodes, *_ = _DQBLK.unpack(buf)
    return space, inodes, any((bhard, bsoft, ihard, isoft))


def _claim_project_id(directory: Path) -> int:
    lock_path = directory.parent.parent / ".project-ids.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for project in range(FIRST_PROJECT_ID, _MAX_PROJECT_ID):
            if _project_usage(directory, project) != (0, 0, False):
                continue
            _set_project_id(directory, project)
            if _project_usage(directory, project)[1] == 1:
                return project
            _set_project_id(directory, 0)  # someone else took it meanwhile
        raise NotSupported(f"no free project id left on the filesystem of {directory}")
    finally:
        os.close(fd)


def _set_project_limit(path: Path, project: int, size: int) -> None:
    kib = (size + 1023) // 1024
    buf = bytearray(_DQBLK.pack(kib, kib, 0, 0, 0, 0, 0, 0, _QIF_BLIMITS | _QIF_ILIMITS))
    _quotactl(path, _Q_SETQUOTA, project, buf)
