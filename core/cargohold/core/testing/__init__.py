"""Suites for implementers, shipped beside the contracts they check.

Plugin authors import them from here::

    from cargohold.core.testing import VolumeDriverConformance

    class TestMyDriver(VolumeDriverConformance):
        driver_class = MyDriver

``VolumeDriverConformance``
    the volume-driver contract (also run by ``cargohold driver check``).
``SnapshotterConformance``
    the snapshot-driver contract.
``BlockArrayConformance``
    the block-array contract (``cargohold.core.api.arrays``: storage-array backends).

They need pytest (``pip install 'cargohold[testing]'``). The benchmark
workloads of ``cargohold bench`` live in ``testing.bench``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Imported on first use, so that one suite does not load the others' machinery.
if TYPE_CHECKING:
    from cargohold.core.testing.arrays import BlockArrayConformance
    from cargohold.core.testing.snapshotters import SnapshotterConformance
    from cargohold.core.testing.volume_drivers import VolumeDriverConformance
else:
    _LAZY = {
        "BlockArrayConformance": "cargohold.core.testing.arrays",
        "VolumeDriverConformance": "cargohold.core.testing.volume_drivers",
        "SnapshotterConformance": "cargohold.core.testing.snapshotters",
    }

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(module), name)


__all__ = ["BlockArrayConformance", "SnapshotterConformance", "VolumeDriverConformance"]
