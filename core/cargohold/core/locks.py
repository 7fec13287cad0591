"""Per-volume locks that hold across threads and processes.

Each lock is an ``flock`` on its own open of a per-name file. ``flock``
belongs to the open file description, so two threads of one process exclude
each other exactly as two processes do. Lock files are tiny and kept: deleting
one while another process waits on it would split the lock in two.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class VolumeLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock of ``name`` (already validated: a single path component)."""
        fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the description releases the lock
