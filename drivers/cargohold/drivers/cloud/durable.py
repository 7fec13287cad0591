"""Small helpers for files that must survive a crash at any point."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` by ``data``: after a crash it holds the old or the new bytes, whole.

    ``durable=False`` skips the fsyncs, for files that only report (a lost update is harmless).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    write_atomic(path, text.encode(), durable=durable)


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` if there is none (a torn write never happens)."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
