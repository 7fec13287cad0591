"""The manifest: what the cache held the last time it matched the remote.

One entry per synced file and per empty-directory marker: the remote version
(ETag or generation) and the local file's size, mtime and ctime right after it
was fetched or uploaded. A file whose stat still matches its entry is clean;
anything else is a local change to write back. A remote entry whose version
differs from the manifest's is a remote change to fetch (or a conflict).
The manifest is rewritten atomically (see `durable.write_atomic`).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cargohold.drivers.cloud.durable import read_json, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stat:
    """What tells a local change apart: size, mtime and ctime in nanoseconds."""

    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stat:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class Entry:
    is_dir: bool
    version: str
    size: int = 0
    stat: Stat | None = None


class Manifest:
    """The synced state of one volume, loaded from and saved to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        raw = read_json(path, {})
        for name, item in raw.get("entries", {}).items():
            st = Stat(*item["st"]) if item.get("st") else None
            self.entries[name] = Entry(item["d"], item["v"], item.get("n", 0), st)

    def save(self) -> None:
        entries = {
            name: {
                "d": e.is_dir,
                "v": e.version,
                "n": e.size,
                "st": [e.stat.size, e.stat.mtime_ns, e.stat.ctime_ns] if e.stat else None,
            }
            for name, e in self.entries.items()
        }
        write_json(self.path, {"format": 1, "entries": entries})

    def files(self) -> dict[str, Entry]:
        return {p: e for p, e in self.entries.items() if not e.is_dir}


@dataclass(frozen=True)
class LocalTree:
    """The cache directory as it is now: files with their stat, directories, and empties."""

    files: dict[str, Stat]
    dirs: set[str]
    empty_dirs: set[str]
    skipped: list[str]


def scan(data: Path) -> LocalTree:
    """Walk the cache (never following symlinks); relative paths with ``/``."""
    files: dict[str, Stat] = {}
    dirs: set[str] = set()
    empty: set[str] = set()
    skipped: list[str] = []

    def walk(directory: str, rel: str) -> bool:
        """Scan one directory; True if it has no entries at all."""
        count = 0
        with os.scandir(directory) as it:
            for entry in it:
                count += 1
                path = f"{rel}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    dirs.add(path)
                    if walk(entry.path, path + "/"):
                        empty.add(path)
                elif stat.S_ISREG(st.st_mode):
                    files[path] = Stat.of(st)
                else:  # symlinks, sockets, fifos: object stores cannot hold them
                    skipped.append(path)
        return count == 0

    if data.is_dir():
        walk(str(data), "")
    if skipped:
        log.warning("not synced (not regular files): %s", ", ".join(sorted(skipped)[:20]))
    return LocalTree(files, dirs, empty, skipped)


def parents(path: str) -> Iterator[str]:
    """``a/b/c`` -> ``a/b``, ``a``."""
    parts = path.split("/")
    for i in range(len(parts) - 1, 0, -1):
        yield "/".join(parts[:i])
