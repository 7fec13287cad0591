"""Moving bytes: retries with backoff, hashing, and ranged parallel downloads."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cargohold.drivers.cloud.backend import Backend, RemoteEntry, Transient

log = logging.getLogger(__name__)

T = TypeVar("T")

#: attempts per request before a transient failure is given up on (then the
#: batch stays journalled and the next flush tries again)
ATTEMPTS = 6
_BASE_DELAY = 0.2
_MAX_DELAY = 8.0


class CacheFull(OSError):
    """The cache's filesystem has no room left (ENOSPC or EDQUOT)."""


def retrying(what: str, fn: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Call ``fn``, retrying `Transient` failures with capped exponential backoff and jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Transient as err:
            if attempt == attempts:
                raise
            delay = min(_MAX_DELAY, _BASE_DELAY * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.info("%s: %s; retry %d/%d in %.1fs", what, err, attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    backend: Backend,
    entry: RemoteEntry,
    dest: Path,
    *,
    pool: ThreadPoolExecutor | None,
    progress: Callable[[int], None],
    parallel: int = 1,
) -> None:
    """Fetch ``entry`` into the new file ``dest``, ranges in parallel for a large object.

    A large object is cut into ``parallel`` contiguous ranges (none smaller than the
    backend's chunk size), each streamed by one thread: as parallel as smaller
    ranges, with fewer requests. Every range is pinned to ``entry.version``, so the
    file is one version or the call fails; a retry resumes a range where it broke.
    ``dest`` is removed on failure, never left partial.
    """
    chunk = max(backend.chunk_size, -(-entry.size // max(1, parallel)))
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            if entry.size:
                os.posix_fallocate(fd, 0, entry.size)  # ENOSPC now, not midway
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheFull(err.errno, os.strerror(err.errno)) from None
            # filesystems without fallocate: space is found while writing

        def fetch(start: int, end: int | None) -> None:
            reached = start

            def attempt() -> None:
                nonlocal reached
                if end is not None and reached >= end:
                    return
                stream = backend.get(entry.path, version=entry.version, start=reached, end=end)
                for data in stream:
                    view = memoryview(data)
                    while view:
                        written = os.pwrite(fd, view, reached)
                        reached += written
                        view = view[written:]
                        progress(written)

            retrying(f"fetching {entry.path}", attempt)

        if entry.size <= chunk or pool is None:
            fetch(0, None)
        else:
            ranges = [(s, min(s + chunk, entry.size)) for s in range(0, entry.size, chunk)]
            for future in [pool.submit(fetch, s, e) for s, e in ranges]:
                future.result()
        os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) if entry.size == 0 else entry.size)
        # no fsync here: the fetch makes all its files durable at once (`syncfs`)
    except OSError as err:
        os.close(fd)
        with contextlib.suppress(OSError):
            dest.unlink()
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheFull(err.errno, os.strerror(err.errno)) from None
        raise
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    os.close(fd)
