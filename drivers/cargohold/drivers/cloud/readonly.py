"""A read-only view of the cache: a read-only bind mount (the kernel refuses every write)."""

from __future__ import annotations

import errno
from pathlib import Path

from cargohold.core.kernel import mounts


def is_mounted(path: Path) -> bool:
    return mounts.is_mountpoint(path)


def bind_readonly(source: Path, target: Path) -> None:
    """Bind ``source`` on ``target`` read-only."""
    target.mkdir(exist_ok=True)
    mounts.bind(source, target, readonly=True)


def unbind(target: Path) -> None:
    """Detach every bind on ``target`` (a crash may have left it bound twice)."""
    try:
        mounts.unmount_all(target, private=False)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise
