"""Every built-in snapshotter passes the conformance suite cargohold ships."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core.kernel import snapshot_mounts as snapshots
from cargohold.core.testing.snapshotters import SnapshotterConformance
from cargohold.drivers.snapshotters.btrfs import BtrfsSnapshotter
from cargohold.drivers.snapshotters.copy import CopySnapshotter
from cargohold.drivers.snapshotters.overlay import OverlaySnapshotter


class TestOverlay(SnapshotterConformance):
    driver_class = OverlaySnapshotter


class TestOverlayFsconfig(SnapshotterConformance):
    """Deep overlays through fsconfig("lowerdir+"), layer by layer (past ~200 layers)."""

    driver_class = OverlaySnapshotter

    @pytest.fixture(autouse=True)
    def no_shared_dir_fd(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(snapshots, "USE_SHARED_DIR_FD", False)


class TestOverlayOldKernelPath(SnapshotterConformance):
    """Deep overlays without fsconfig("lowerdir+"), as on kernels before 6.8."""

    driver_class = OverlaySnapshotter

    @pytest.fixture(autouse=True)
    def no_new_mount_api(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(snapshots, "USE_SHARED_DIR_FD", False)
        monkeypatch.setattr(snapshots, "USE_NEW_MOUNT_API", False)


class TestCopy(SnapshotterConformance):
    driver_class = CopySnapshotter
    usage_excludes_parents = False  # each snapshot is a full copy


class TestBtrfs(SnapshotterConformance):
    driver_class = BtrfsSnapshotter
    usage_excludes_parents = False  # without quotas btrfs cannot tell shared blocks apart

    @pytest.fixture
    def snapshot_root(self, btrfs_dir: Path) -> Iterator[Path]:
        yield btrfs_dir
