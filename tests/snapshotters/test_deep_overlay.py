"""Overlays deeper than one page of mount options, each way cargohold mounts them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.core.api.snapshots import SnapshotMount
from cargohold.core.kernel import snapshot_mounts as snapshots
from cargohold.core.kernel.snapshot_mounts import MOUNT_DATA_LIMIT, mounted

pytestmark = pytest.mark.root


def layers(root: Path, count: int) -> SnapshotMount:
    """``count`` lower layers (``f<i>`` in each) under a long path, plus upper and work."""
    base = root / ("deep-overlay-layers-with-a-long-name-" * 2)
    lowers = []
    for i in range(count):
        layer = base / f"{i:04d}"
        layer.mkdir(parents=True)
        (layer / f"f{i:04d}").write_text(str(i))
        lowers.append(str(layer))
    (base / "upper").mkdir()
    (base / "work").mkdir()
    options = (
        f"lowerdir={':'.join(reversed(lowers))}",
        f"upperdir={base / 'upper'}",
        f"workdir={base / 'work'}",
    )
    mount = SnapshotMount("overlay", "overlay", options)
    assert len(",".join(options)) > MOUNT_DATA_LIMIT
    return mount


def forbid(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    def fail(*args: Any) -> None:
        raise AssertionError("this way of mounting should not have been needed")

    for name in names:
        monkeypatch.setattr(snapshots, name, fail)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    snapshots.unmount_all(path)


def check(mount: SnapshotMount, target: Path, count: int) -> None:
    with mounted([mount], target):
        assert len([n for n in os.listdir(target) if n.startswith("f")]) == count
        (target / "written").write_text("ok")


def test_one_directory_fd_for_every_layer(
    tmp_path: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid(monkeypatch, "_mount_overlay_fsconfig", "_mount_overlay_fd_paths")
    check(layers(tmp_path, 150), target, 150)


def test_fsconfig_layer_by_layer_past_two_hundred(
    tmp_path: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid(monkeypatch, "_mount_overlay_fd_paths")
    check(layers(tmp_path, 300), target, 300)  # too many even for the shared fd


def test_a_descriptor_per_layer_on_older_kernels(
    tmp_path: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "USE_SHARED_DIR_FD", False)
    monkeypatch.setattr(snapshots, "USE_NEW_MOUNT_API", False)
    forbid(monkeypatch, "_mount_overlay_fsconfig")
    check(layers(tmp_path, 150), target, 150)
