"""The ``btrfs`` snapshotter: one subvolume per snapshot, snapshots of the parent.

Needs the state directory on btrfs. Preparing on a parent is a writable
snapshot of the parent's subvolume (constant time, blocks shared);
committing marks the subvolume read-only. A view of a committed snapshot is
a read-only bind mount of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cargohold.core.errors import CargoholdError
from cargohold.core.snapshots import Kind
from cargohold.drivers.snapshotters.common import FullTreeSnapshotter, filesystem_type

BTRFS_SUPER_MAGIC = 0x9123683E


class BtrfsSnapshotter(FullTreeSnapshotter):
    name = "btrfs"

    @classmethod
    def unsupported_reason(cls, root: Path) -> str | None:
        if os.geteuid() != 0:
            return "btrfs subvolumes and bind mounts need root"
        if shutil.which("btrfs") is None:
            return "the btrfs command is missing (apt-get install btrfs-progs)"
        if filesystem_type(root) != BTRFS_SUPER_MAGIC:
            return f"{root} is not on a btrfs filesystem"
        return None

    def create(self, sid: str, parents: Sequence[str], kind: Kind) -> None:
        (self.root / sid).mkdir(mode=0o711)
        if kind is Kind.ACTIVE and parents:
            _btrfs("subvolume", "snapshot", str(self._fs(parents[0])), str(self._fs(sid)))
        else:
            _btrfs("subvolume", "create", str(self._fs(sid)))

    def commit(self, sid: str, parents: Sequence[str]) -> None:
        _btrfs("property", "set", "-ts", str(self._fs(sid)), "ro", "true")

    def remove(self, sid: str) -> None:
        fs = self._fs(sid)
        if fs.exists():
            _btrfs("subvolume", "delete", str(fs))
        super().remove(sid)


def _btrfs(*args: str) -> None:
    result = subprocess.run(["btrfs", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise CargoholdError(f"btrfs {' '.join(args)} failed: {result.stderr.strip()}")
