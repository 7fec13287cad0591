"""The one ctypes binding of libc for the whole project.

``CDLL(None)`` is the C library the interpreter already links, found without
``ctypes.util.find_library`` (which runs ``ldconfig -p`` in a subprocess).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def raise_errno(what: str, target: Path | str | None = None) -> None:
    """Raise the ``OSError`` of the last failed libc call, naming what failed."""
    err = ctypes.get_errno()
    where = f" of {target}" if target is not None else ""
    raise OSError(err, f"{what}{where} failed: {os.strerror(err)}")


def check(result: int, what: str, target: Path | str | None = None) -> int:
    """Return ``result`` of a libc call, or raise its errno if it is negative or -1."""
    if result < 0:
        raise_errno(what, target)
    return result


def syscall(number: int, *args: Any) -> int:
    """Call a raw system call (those glibc wraps late or not at all); raise on failure."""
    result = int(libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result
