"""Files the way the filesystem does it best: reflink, else sparse copy; one flush per fs.

`clone_file` asks for a reflink (``FICLONE``: constant time, blocks shared
until written, on btrfs and on xfs made with ``reflink=1``) and falls back to
copying only the extents that hold data (``SEEK_DATA``/``SEEK_HOLE`` with
``copy_file_range``), so a thin image stays thin. The copy is written to a
temporary name and renamed, so a crash never leaves a half copy under the
final name.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Literal

from cargohold.core.kernel.libc import check, libc

FICLONE = 0x40049409
_NO_REFLINK = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS)

How = Literal["reflink", "sparse"]


def clone_file(source: Path, dest: Path, *, mode: int = 0o600) -> How:
    """Copy ``source`` to the new file ``dest``; say whether by reflink or sparse copy."""
    partial = dest.with_name(f".{dest.name}.partial")
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            how = _copy(src, out)
            if how == "sparse":  # a reflink is metadata, ordered before the link by the journal
                os.fsync(out)
        except BaseException:
            os.close(out)
            partial.unlink(missing_ok=True)
            raise
        os.close(out)
    finally:
        os.close(src)
    try:
        os.link(partial, dest)  # fails if dest appeared meanwhile: never replace a file
    finally:
        partial.unlink(missing_ok=True)
    return how


def _copy(src: int, out: int) -> How:
    try:
        fcntl.ioctl(out, FICLONE, src)
        return "reflink"
    except OSError as err:
        if err.errno not in _NO_REFLINK:
            raise
    size = os.fstat(src).st_size
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        end = os.lseek(src, start, os.SEEK_HOLE)
        position = start
        while position < end:
            copied = os.copy_file_range(src, out, end - position, position, position)
            if copied == 0:
                break
            position += copied
        offset = end
    os.ftruncate(out, size)
    return "sparse"


def supports_reflink(directory: Path) -> bool:
    """True if files in ``directory`` can be reflinked (tried on two empty files)."""
    a = directory / f".reflink-probe-{os.getpid()}-a"
    b = directory / f".reflink-probe-{os.getpid()}-b"
    try:
        fa = os.open(a, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fb = os.open(b, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            fcntl.ioctl(fb, FICLONE, fa)
            return True
        except OSError:
            return False
        finally:
            os.close(fa)
            os.close(fb)
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)


def syncfs(path: Path) -> None:
    """Flush the whole filesystem holding ``path``: one call instead of an fsync per file."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        check(libc.syncfs(fd), "syncfs", path)
    finally:
        os.close(fd)
