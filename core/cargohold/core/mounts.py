"""The kernel's mount system calls, without spawning mount(8).

A bind mount through the syscall costs about 0.04 ms here, against ~8 ms for
the mount command, and the runtime makes many of them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
}

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str, target: Path | str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} of {target} failed: {os.strerror(errno)}")


def mount(
    source: str | Path,
    target: str | Path,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _check(
        _libc.mount(
            os.fsencode(source),
            os.fsencode(target),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        "mount",
        target,
    )


def bind(
    source: str | Path,
    target: str | Path,
    *,
    readonly: bool = False,
    recursive: bool = True,
    propagation: str | None = None,
) -> None:
    """Bind ``source`` on ``target``; read-only and propagation need a second call."""
    flags = MS_BIND | (MS_REC if recursive else 0)
    mount(source, target, None, flags)
    try:
        if readonly:
            mount("none", target, None, flags | MS_REMOUNT | MS_RDONLY)
        if propagation:
            mount("none", target, None, PROPAGATION[propagation])
    except OSError:
        umount(target, detach=True)
        raise


def umount(target: str | Path, *, detach: bool = False) -> None:
    _check(_libc.umount2(os.fsencode(target), MNT_DETACH if detach else 0), "unmount", target)


def is_mountpoint(path: str | Path) -> bool:
    return os.path.ismount(path)
