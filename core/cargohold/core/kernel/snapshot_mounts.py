"""Mounting snapshots: a list of `SnapshotMount` values applied to one directory.

Overlays whose options exceed the kernel's one page of mount data are mounted
layer by layer through the new mount API, or through short fd paths.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from cargohold.core.api.errors import NotSupported
from cargohold.core.api.logs import get_logger
from cargohold.core.api.snapshots import SnapshotMount
from cargohold.core.kernel import mounts as kmounts
from cargohold.core.kernel.libc import syscall

log = get_logger(__name__)

#: mount(2) takes at most one page of data, its terminating NUL included.
MOUNT_DATA_LIMIT = 4096 - 1


def mount_one(m: SnapshotMount, target: str | Path) -> None:
    """SnapshotMount ``m`` on ``target`` (a directory) in the calling mount namespace."""
    if m.type == "bind":
        kmounts.bind(m.source, target, readonly=m.readonly, recursive="rbind" in m.options)
        return
    flags, data = kmounts.parse_options(m.options)
    if m.type == "overlay" and len(data.encode()) > MOUNT_DATA_LIMIT:
        _mount_overlay_long(m, target, flags)
        return
    kmounts.mount(m.source, target, m.type, flags, data or None)


def mount_all(mounts: Sequence[SnapshotMount], target: str | Path) -> None:
    """Apply ``mounts`` in order on ``target``; on failure undo what was done."""
    done = 0
    try:
        for m in mounts:
            mount_one(m, target)
            done += 1
    except BaseException:
        for _ in range(done):
            kmounts.umount(target, detach=True)
        raise


def unmount_all(target: str | Path) -> None:
    """Unmount everything stacked on ``target`` (no error if nothing is).

    Snapshot mounts have no submounts to protect, so no `kmounts.make_private`.
    """
    kmounts.unmount_all(target, private=False)


@contextlib.contextmanager
def mounted(mounts: Sequence[SnapshotMount], target: str | Path) -> Iterator[Path]:
    """``with mounted(snapshotter.view(...), tmpdir) as root:`` ... unmounted after."""
    mount_all(mounts, target)
    try:
        yield Path(target)
    finally:
        unmount_all(target)


# Long overlay mounts. mount(2) takes at most one page of options: about 55
# layers at typical state-dir path lengths. Kernels from 6.8 accept lower
# layers one at a time through fsconfig("lowerdir+"), with no total limit;
# older kernels get short /proc/self/fd/N names for each layer instead.

_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_RDONLY = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100


#: Tests turn these off to exercise each way of mounting a deep overlay.
USE_SHARED_DIR_FD = True
USE_NEW_MOUNT_API = True


def _mount_overlay_long(m: SnapshotMount, target: str | Path, flags: int) -> None:
    """SnapshotMount an overlay whose options exceed a page, the cheapest way that fits.

    First one mount(2) naming every layer through a single open directory
    (``/proc/<pid>/fd/N/<id>``: about 20 bytes a layer, so some 180 layers
    fit a page); then fsconfig ``lowerdir+`` (Linux 6.8+, no limit); then a
    descriptor per layer. None changes the working directory, so threads are safe.
    """
    if USE_SHARED_DIR_FD and _mount_overlay_shared_fd(m, target, flags):
        return
    if USE_NEW_MOUNT_API:
        try:
            _mount_overlay_fsconfig(m, target, flags)
            return
        except OSError as err:
            if err.errno not in (errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP):
                raise
            log.debug("fsconfig lowerdir+ unavailable (%s); using fd paths", err)
    _mount_overlay_fd_paths(m, target, flags)


def _mount_overlay_shared_fd(m: SnapshotMount, target: str | Path, flags: int) -> bool:
    """SnapshotMount with paths relative to one directory fd; False if they still do not fit."""
    paths = {
        key: value
        for key, value in (o.partition("=")[::2] for o in m.options)
        if key in ("lowerdir", "upperdir", "workdir")
    }
    every = [p for value in paths.values() for p in value.split(":")]
    if not every or not all(p.startswith("/") for p in every):
        return False
    # string prefix (cheap: compares only the least and greatest path), cut at a "/"
    prefix_text = os.path.commonprefix(every)  # noqa: RUF071 - cut at a "/" below
    common = prefix_text[: prefix_text.rfind("/")] or "/"
    fd = os.open(common, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # /proc/self is a symlink the kernel would resolve again for every layer
        # (a third of the mount's time at 100 layers); its target is our pid as
        # this /proc sees it, which os.getpid() may not be in another pid namespace
        prefix = f"/proc/{os.readlink('/proc/self')}/fd/{fd}"

        cut = len(common) if common != "/" else 0

        def short(path: str) -> str:
            return prefix + path[cut:]

        rewritten = []
        for opt in m.options:
            if kmounts.is_flag(opt):
                continue
            key, _, value = opt.partition("=")
            if key in paths:
                opt = f"{key}={':'.join(short(p) for p in value.split(':'))}"
            rewritten.append(opt)
        data = ",".join(rewritten)
        if len(data.encode()) > MOUNT_DATA_LIMIT:
            return False
        kmounts.mount(m.source, target, "overlay", flags, data)
        return True
    finally:
        os.close(fd)


def _mount_overlay_fsconfig(m: SnapshotMount, target: str | Path, flags: int) -> None:
    lower = (m.option("lowerdir") or "").split(":")
    fs_fd = syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    try:

        def set_string(key: str, value: str) -> None:
            try:
                syscall(
                    _SYS_FSCONFIG, fs_fd, _FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0
                )
            except OSError as err:
                raise OSError(err.errno, f"overlay option {key}={value}: {err.strerror}") from err

        for layer in lower:
            set_string("lowerdir+", layer)
        for opt in m.options:
            key, sep, value = opt.partition("=")
            if key == "lowerdir" or kmounts.is_flag(opt):
                continue
            if sep:
                set_string(key, value)
            else:
                syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
        syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_CMD_CREATE, None, None, 0)
        attrs = _MOUNT_ATTR_RDONLY if flags & kmounts.MS_RDONLY else 0
        mnt_fd = syscall(_SYS_FSMOUNT, fs_fd, _FSMOUNT_CLOEXEC, attrs)
        try:
            syscall(
                _SYS_MOVE_MOUNT,
                mnt_fd,
                b"",
                _AT_FDCWD,
                os.fsencode(str(target)),
                _MOVE_MOUNT_F_EMPTY_PATH,
            )
        finally:
            os.close(mnt_fd)
    finally:
        os.close(fs_fd)


def _mount_overlay_fd_paths(m: SnapshotMount, target: str | Path, flags: int) -> None:
    lower = (m.option("lowerdir") or "").split(":")
    fds: list[int] = []
    try:
        for layer in lower:
            fds.append(os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        short = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        rest = [o for o in m.options if not o.startswith("lowerdir=") and not kmounts.is_flag(o)]
        data = ",".join([f"lowerdir={short}", *rest])
        if len(data.encode()) > MOUNT_DATA_LIMIT:
            raise NotSupported(
                f"an overlay of {len(lower)} layers does not fit this kernel's mount options "
                "(one page); use Linux 6.8 or later, or the copy snapshotter"
            )
        kmounts.mount(m.source, target, "overlay", flags, data)
    finally:
        for fd in fds:
            os.close(fd)
