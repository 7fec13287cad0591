"""Container root filesystem assembly, overlay and copy, against a bare overlay mount.

For images of 1, 10, 50 and 100 layers (each layer adds a directory of four
1 KiB files), already unpacked into each snapshotter, one *assembly* is what
a container start pays: ``prepare`` a writable snapshot on the image's top
layer (metadata row, directories, for copy the copy itself) and mount it on
an empty directory. The floor, measured in the same run and interleaved with
the others so the machine's drift hits all alike, is the least any overlay
runtime can do: make an upper and a work directory and call mount(2) once
with the same layer directories (relative paths, so even 100 layers fit one
page). Teardown (unmount, remove) is not timed. Reported in ``extra_info``
and printed: medians in microseconds and the ratios to the floor. The goal
is overlay within 2x of the floor; nothing is asserted about time.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.core.api.snapshots import SnapshotContext
from cargohold.core.images.layers import apply_to_snapshot
from cargohold.core.kernel import mounts
from cargohold.core.kernel.snapshot_mounts import mount_all, unmount_all
from cargohold.core.snapshots.service import Snapshotter
from cargohold.core.state.snapshot_store import SnapshotMetadata
from cargohold.core.testing.snapshotters import layer, remove_all
from cargohold.drivers.snapshotters.copy import CopySnapshotter
from cargohold.drivers.snapshotters.overlay import OverlaySnapshotter

pytestmark = [pytest.mark.benchmark, pytest.mark.root]

ROUNDS = 25
FILES_PER_LAYER = 4


def layer_tar(index: int) -> bytes:
    entries: list[tuple[Any, ...]] = [("dir", f"l{index:03d}")]
    entries += [("file", f"l{index:03d}/f{j}", os.urandom(1024)) for j in range(FILES_PER_LAYER)]
    return layer(*entries)


class Chain:
    """An image of ``depth`` layers committed in one snapshotter."""

    def __init__(self, snap: Snapshotter, depth: int, scratch: Path) -> None:
        self.snap = snap
        parent: str | None = None
        for i in range(depth):
            key, name = f"unpack-{i}", f"layer-{i}"
            snap.prepare(key, parent)
            apply_to_snapshot(snap, key, io.BytesIO(layer_tar(i)), scratch)
            snap.commit(name, key)
            parent = name
        self.top = parent
        self.count = 0

    def assemble(self, target: Path) -> str:
        self.count += 1
        key = f"ctr-{self.count}"
        mount_all(self.snap.prepare(key, self.top), target)
        return key

    def teardown(self, target: Path, key: str) -> None:
        unmount_all(target)
        self.snap.remove(key)


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="chbench-", dir="/var/tmp"))
    try:
        yield path
    finally:
        for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
            if line.split()[1].startswith(str(path)):
                mounts.umount(line.split()[1], detach=True)
        shutil.rmtree(path, ignore_errors=True)


def snapshotter(cls: type[Any], root: Path) -> Snapshotter:
    data = root / cls.name
    data.mkdir(parents=True)
    return Snapshotter(cls(SnapshotContext(data)), SnapshotMetadata(root / f"{cls.name}.db"))


def bare_overlay(
    layer_root: Path, lower_ids: list[str], scratch: Path, target: Path
) -> Callable[[], None]:
    """mkdir upper and work, one mount(2) with relative lower paths; returns the undo."""
    upper, workdir = scratch / "upper", scratch / "work"
    upper.mkdir()
    workdir.mkdir()
    lower = ":".join(lower_ids)
    cwd = os.getcwd()
    os.chdir(layer_root)
    try:
        mounts.mount(
            "overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={workdir}"
        )
    finally:
        os.chdir(cwd)

    def undo() -> None:
        mounts.umount(target)
        shutil.rmtree(upper)
        shutil.rmtree(workdir)

    return undo


@pytest.mark.parametrize("depth", [1, 10, 50, 100])
def test_rootfs_assembly(benchmark: Any, work: Path, depth: int) -> None:
    root = work / f"depth-{depth}"
    root.mkdir()
    overlay = snapshotter(OverlaySnapshotter, root)
    copy = snapshotter(CopySnapshotter, root)
    chains = {"overlay": Chain(overlay, depth, root), "copy": Chain(copy, depth, root)}
    # the layer directories of the overlay chain, top first, for the floor
    lower_ids = sorted(
        (p.name for p in (root / "overlay").iterdir() if p.name.isdigit()), key=int, reverse=True
    )
    targets = {name: root / f"mnt-{name}" for name in ("floor", "overlay", "copy")}
    for target in targets.values():
        target.mkdir()
    samples: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            undo = bare_overlay(root / "overlay", lower_ids, root, targets["floor"])
            samples["floor"].append(time.perf_counter() - start)
            assert len(os.listdir(targets["floor"])) == depth
            undo()
            for name, chain in chains.items():
                start = time.perf_counter()
                key = chain.assemble(targets[name])
                samples[name].append(time.perf_counter() - start)
                assert len(os.listdir(targets[name])) == depth
                chain.teardown(targets[name], key)

        def one_overlay() -> None:
            key = chains["overlay"].assemble(targets["overlay"])
            chains["overlay"].teardown(targets["overlay"], key)

        benchmark.pedantic(one_overlay, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    finally:
        for target in targets.values():
            unmount_all(target)
        for snap in (overlay, copy):
            remove_all(snap)
    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    info = {f"{name}_median_us": round(value, 1) for name, value in medians.items()}
    info["overlay_ratio"] = round(medians["overlay"] / medians["floor"], 2)
    info["copy_ratio"] = round(medians["copy"] / medians["floor"], 2)
    info["layers"] = depth
    benchmark.extra_info.update(info)
    print(f"\nrootfs assembly, {depth} layers ({FILES_PER_LAYER} files each):")
    for key, value in info.items():
        print(f"  {key:>18} = {value}")
