"""The ``btrfs`` snapshotter: one subvolume per snapshot, snapshots of the parent.

Needs the state directory on btrfs. Preparing on a parent is a writable
snapshot of the parent's subvolume (constant time, blocks shared);
committing marks the subvolume read-only. A view of a committed snapshot is
a read-only bind mount of it. Everything goes through the btrfs ioctls
(`cargohold.core.kernel.btrfs`), never the ``btrfs`` command.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cargohold.core.api.errors import CargoholdError
from cargohold.core.api.snapshots import Kind
from cargohold.core.kernel import btrfs
from cargohold.drivers.snapshotters.common import FullTreeSnapshotter, nearest_existing


class BtrfsSnapshotter(FullTreeSnapshotter):
    name = "btrfs"

    @classmethod
    def unsupported_reason(cls, root: Path) -> str | None:
        if os.geteuid() != 0:
            return "btrfs subvolumes and bind mounts need root"
        if not btrfs.is_btrfs(nearest_existing(root)):
            return f"{root} is not on a btrfs filesystem"
        return None

    def create(self, sid: str, parents: Sequence[str], kind: Kind) -> None:
        (self.root / sid).mkdir(mode=0o711)
        if kind is Kind.ACTIVE and parents:
            source = self._fs(parents[0])
            _run("snapshot of", source, lambda: btrfs.snapshot(source, self._fs(sid)))
        else:
            _run("creating subvolume", self._fs(sid), lambda: btrfs.create_subvolume(self._fs(sid)))

    def commit(self, sid: str, parents: Sequence[str]) -> None:
        _run("marking read-only", self._fs(sid), lambda: btrfs.set_read_only(self._fs(sid)))

    def remove(self, sid: str) -> None:
        fs = self._fs(sid)
        if fs.exists():
            _run("deleting subvolume", fs, lambda: btrfs.delete_subvolume(fs))
        super().remove(sid)


def _run(what: str, path: Path, call: Callable[[], None]) -> None:
    try:
        call()
    except OSError as err:
        raise CargoholdError(f"btrfs snapshotter: {what} {path} failed: {err.strerror}") from None
