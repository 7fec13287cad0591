"""Registers the built-in snapshotters (driver modules imported only when collected)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cargohold.core import hookimpl

if TYPE_CHECKING:
    from cargohold.core.api.snapshots import SnapshotDriver


@hookimpl
def cargohold_snapshotters() -> Sequence[type[SnapshotDriver]]:
    from cargohold.drivers.snapshotters.btrfs import BtrfsSnapshotter
    from cargohold.drivers.snapshotters.copy import CopySnapshotter
    from cargohold.drivers.snapshotters.overlay import OverlaySnapshotter

    return [OverlaySnapshotter, CopySnapshotter, BtrfsSnapshotter]
