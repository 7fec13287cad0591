"""A read-only view of the cache: a read-only bind mount (the kernel refuses every write)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str, target: Path) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what} {target}: {os.strerror(code)}")


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            if line.split()[4].replace("\\040", " ") == target:
                return True
    return False


def bind_readonly(source: Path, target: Path) -> None:
    """Bind ``source`` on ``target`` read-only (two steps: the kernel ignores RDONLY on bind)."""
    target.mkdir(exist_ok=True)
    src, dst = os.fsencode(source), os.fsencode(target)
    _check(_libc.mount(src, dst, None, _MS_BIND | _MS_REC, None), "bind-mounting", target)
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY
    result = _libc.mount(None, dst, None, flags, None)
    if result != 0:
        _libc.umount2(dst, _MNT_DETACH)
        _check(result, "making read-only", target)


def unbind(target: Path) -> None:
    while is_mounted(target):  # a crash may have left it bound twice
        _check(_libc.umount2(os.fsencode(target), _MNT_DETACH), "unmounting", target)
