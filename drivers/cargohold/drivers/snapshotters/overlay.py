"""The ``overlay`` snapshotter: kernel overlayfs, one directory per layer.

Each snapshot is ``<root>/<id>`` (its own changes) and ``<root>/<id>.work``
(overlay's scratch space, a sibling so that a container start costs two
mkdirs, not three). An active snapshot on parents mounts as an
overlay: the parents are the lower layers, its own directory the upper. Layers are
written with overlay's native whiteouts so they stack without conversion.
Deep images, whose layer list overflows one page of mount options, are
mounted layer by layer (see `cargohold.core.api.snapshots.SnapshotMount.mount`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from cargohold.core.api.snapshots import ApplyTarget, Kind, SnapshotDriver, SnapshotMount, Usage
from cargohold.core.kernel import mounts as kmounts
from cargohold.drivers.snapshotters.common import disk_usage, nearest_existing, remove_tree

_probed: dict[int, str | None] = {}
#: Beside the snapshotter's root: "<boot id> <kernel release> <device>" of a probe that worked.
PROBE_CACHE = ".overlay-probe"


class OverlaySnapshotter(SnapshotDriver):
    name = "overlay"

    @classmethod
    def unsupported_reason(cls, root: Path) -> str | None:
        if os.geteuid() != 0:
            return "overlay mounts need root"
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "the kernel has no overlayfs (modprobe overlay)"
        base = nearest_existing(root)
        device = base.stat().st_dev
        if device not in _probed:
            _probed[device] = _remembered_probe(root, base, device)
        return _probed[device]

    def _fs(self, sid: str) -> Path:
        return self.root / sid

    def create(self, sid: str, parents: Sequence[str], kind: Kind) -> None:
        # plain strings, as in mounts(): this runs per container start
        base = os.fspath(self.root)
        os.mkdir(f"{base}/{sid}", 0o755)
        if kind is Kind.ACTIVE and parents:
            os.mkdir(f"{base}/{sid}.work", 0o700)

    def mounts(self, sid: str, parents: Sequence[str], kind: Kind) -> list[SnapshotMount]:
        # plain string joins: for deep images this runs per container start
        base = os.fspath(self.root)
        if kind is Kind.VIEW:
            if not parents:
                return [SnapshotMount("bind", f"{base}/{sid}", ("rbind", "ro"))]
            if len(parents) == 1:
                return [SnapshotMount("bind", f"{base}/{parents[0]}", ("rbind", "ro"))]
            lower = ":".join([f"{base}/{p}" for p in parents])
            return [SnapshotMount("overlay", "overlay", ("ro", f"lowerdir={lower}"))]
        if not parents:
            return [SnapshotMount("bind", f"{base}/{sid}", ("rbind", "rw"))]
        lower = ":".join([f"{base}/{p}" for p in parents])
        options = (f"lowerdir={lower}", f"upperdir={base}/{sid}", f"workdir={base}/{sid}.work")
        return [SnapshotMount("overlay", "overlay", options)]

    def commit(self, sid: str, parents: Sequence[str]) -> None:
        # A committed layer is only ever a lower layer: the scratch space can go.
        remove_tree(self.root / f"{sid}.work")

    def remove(self, sid: str) -> None:
        remove_tree(self.root / f"{sid}.work")
        remove_tree(self.root / sid)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted({p.name.removesuffix(".work") for p in self.root.iterdir()})

    def usage(self, sid: str, parents: Sequence[str]) -> Usage:
        return disk_usage(self._fs(sid))

    def apply_dir(self, sid: str, parents: Sequence[str]) -> ApplyTarget | None:
        # The bottom layer hides nothing: a whiteout there would only show up
        # as a device file in a bind-mounted view, so it is applied as deletions.
        if not parents:
            return ApplyTarget(self._fs(sid), "merged")
        return ApplyTarget(self._fs(sid), "overlay", tuple(self._fs(p) for p in parents))


def _remembered_probe(root: Path, base: Path, device: int) -> str | None:
    """`_probe`, skipped when one on this filesystem worked since the last boot.

    The mount costs about as much as the rest of a container start, and its
    answer only changes with the kernel or the filesystem: a success is kept
    in a file beside ``root`` (never in a directory made for it). A failure is
    not kept, so a passing cause (a module not yet loaded) costs no more than
    a probe per command.
    """
    cache = root.parent / PROBE_CACHE
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return _probe(base)  # no way to tell a reboot: probe every time
    key = f"{boot_id} {os.uname().release} {device}"
    try:
        if cache.read_text().strip() == key:
            return None
    except (OSError, ValueError):
        pass
    reason = _probe(base)
    if reason is None and root.parent.is_dir():
        with contextlib.suppress(OSError):
            scratch = cache.with_name(f"{PROBE_CACHE}.{os.getpid()}")
            scratch.write_text(key + "\n")
            os.replace(scratch, cache)
    return reason


def _probe(base: Path) -> str | None:
    """SnapshotMount a two-layer overlay with its upper dir on ``base``'s filesystem."""
    import tempfile  # a probe runs once per boot

    try:
        with tempfile.TemporaryDirectory(prefix=".overlay-probe-", dir=base) as tmp:
            dirs = {n: Path(tmp, n) for n in ("lower", "upper", "work", "merged")}
            for d in dirs.values():
                d.mkdir()
            data = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
            kmounts.mount("overlay", dirs["merged"], "overlay", 0, data)
            kmounts.umount(dirs["merged"])
    except OSError as err:
        return f"an overlay mount on {base} failed: {err.strerror or err}"
    return None
