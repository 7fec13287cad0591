"""Small helpers the built-in snapshot drivers share."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cargohold.core.api.snapshots import ApplyTarget, Kind, SnapshotDriver, SnapshotMount, Usage


class FullTreeSnapshotter(SnapshotDriver):
    """Base of drivers that keep each snapshot whole in ``<root>/<sid>/fs`` (copy, btrfs).

    A snapshot is shown by a bind mount: read-write when active, read-only
    for a view, which binds its committed parent (no copy). Layer diffs are
    written straight into the tree. Usage counts the tree's files: with
    shared blocks (reflinks, btrfs snapshots) the filesystem cannot say
    which are the snapshot's own.
    """

    def _fs(self, sid: str) -> Path:
        return self.root / sid / "fs"

    def mounts(self, sid: str, parents: Sequence[str], kind: Kind) -> list[SnapshotMount]:
        if kind is Kind.VIEW:
            source = self._fs(parents[0]) if parents else self._fs(sid)
            return [SnapshotMount("bind", str(source), ("rbind", "ro"))]
        return [SnapshotMount("bind", str(self._fs(sid)), ("rbind", "rw"))]

    def remove(self, sid: str) -> None:
        remove_tree(self.root / sid)

    def usage(self, sid: str, parents: Sequence[str]) -> Usage:
        return disk_usage(self._fs(sid))

    def apply_dir(self, sid: str, parents: Sequence[str]) -> ApplyTarget | None:
        return ApplyTarget(self._fs(sid), "merged")


def disk_usage(path: Path) -> Usage:
    """Blocks and inodes under ``path``, each hard-linked inode counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0

    def count(st: os.stat_result) -> None:
        nonlocal size
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            size += st.st_blocks * 512

    if not path.exists():
        return Usage()
    count(os.lstat(path))
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            count(os.lstat(os.path.join(dirpath, name)))
    return Usage(size=size, inodes=len(seen))


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def remove_tree(path: Path) -> None:
    """Delete ``path`` whatever its modes (no error if it is gone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil  # only removals need it

        shutil.rmtree(path)
    else:
        path.unlink()
