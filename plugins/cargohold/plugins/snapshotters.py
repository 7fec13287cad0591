"""Registers the built-in snapshotters, each imported only when its name is first used."""

from __future__ import annotations

from collections.abc import Sequence

from cargohold.core import KnownImplementation, hookimpl


@hookimpl
def cargohold_snapshotters() -> Sequence[KnownImplementation]:
    return [
        KnownImplementation(name, f"cargohold.drivers.snapshotters.{name}:{cls}")
        for name, cls in (
            ("overlay", "OverlaySnapshotter"),
            ("copy", "CopySnapshotter"),
            ("btrfs", "BtrfsSnapshotter"),
        )
    ]
