"""Registers the built-in volume drivers (imported only when drivers are collected)."""

from __future__ import annotations

from collections.abc import Sequence

from cargohold.core import VolumeDriver, hookimpl


@hookimpl
def cargohold_volume_drivers() -> Sequence[type[VolumeDriver]]:
    from cargohold.drivers.bind import BindDriver
    from cargohold.drivers.local import LocalDriver

    return [LocalDriver, BindDriver]
