"""Per-volume locks that hold across threads and processes.

Each lock is an ``flock`` on its own open of a per-name file. ``flock``
belongs to the open file description, so two threads of one process exclude
each other exactly as two processes do. A lock file goes when its volume
does (a refused create or a remove leaves none behind): the holder unlinks
it while still holding it, and whoever was waiting on that file sees, once
it gets the lock, that the name now points elsewhere and locks again.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _always() -> bool:
    return True


class VolumeLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextmanager
    def hold(self, name: str, *, keep: Callable[[], bool] = _always) -> Iterator[None]:
        """Hold the lock of ``name`` (already validated: a single path component).

        ``keep`` is asked, still under the lock, once the work is done (or has
        failed): False removes the lock file, as when the volume is gone.
        """
        path = self.directory / name
        fd = _lock(path)
        try:
            yield
        finally:
            try:
                if not keep():
                    os.unlink(path)
            finally:
                os.close(fd)  # closing the description releases the lock


def _lock(path: Path) -> int:
    """An open, flocked descriptor of the file now at ``path``."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
        except BaseException:
            os.close(fd)
            raise
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)  # the holder before us removed this file: lock the one there now
