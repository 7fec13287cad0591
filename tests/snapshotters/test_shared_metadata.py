"""Two snapshotters on one ``snapshots.db``, as two cargohold processes share it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cargohold.core.api.snapshots import SnapshotContext
from cargohold.core.images.layers import apply_to_snapshot
from cargohold.core.kernel.snapshot_mounts import mounted
from cargohold.core.snapshots.service import Snapshotter
from cargohold.core.state.snapshot_store import SnapshotMetadata
from cargohold.core.testing.snapshotters import layer, remove_all
from cargohold.drivers.snapshotters.overlay import OverlaySnapshotter

pytestmark = pytest.mark.root


def build(snap: Snapshotter, names: list[str], scratch: Path) -> None:
    """Commit layers ``names`` in order, each adding a file named after itself."""
    parent: str | None = None
    for name in names:
        snap.prepare(f"unpack-{name}", parent)
        apply_to_snapshot(snap, f"unpack-{name}", io.BytesIO(layer(("file", name, b"x"))), scratch)
        snap.commit(name, f"unpack-{name}")
        parent = name


def test_a_rebuilt_image_is_seen_by_the_other_process(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    one, two = (
        Snapshotter(
            OverlaySnapshotter(SnapshotContext(tmp_path / "data")),
            SnapshotMetadata(tmp_path / "snapshots.db"),
        )
        for _ in range(2)
    )
    target = tmp_path / "mnt"
    target.mkdir()
    try:
        build(one, ["base", "top"], tmp_path)
        with mounted(two.prepare("ctr-1", "top"), target):
            assert sorted(os.listdir(target)) == ["base", "top"]
        two.remove("ctr-1")
        # the other process replaces the image, reusing the layer names
        one.remove("top")
        one.remove("base")
        build(one, ["other", "base", "top"], tmp_path)
        with mounted(two.prepare("ctr-2", "top"), target):
            assert sorted(os.listdir(target)) == ["base", "other", "top"]
        two.remove("ctr-2")
    finally:
        remove_all(one)
