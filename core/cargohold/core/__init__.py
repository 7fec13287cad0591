"""cargohold's runtime core: the contract plugin authors code against, and the runtime.

This module is the public face of the core (as pluggy's ``__init__`` is of
pluggy): everything a third-party driver, snapshotter or plugin needs is
importable from here, and what is not here is internal and may move.

- hooks: `hookimpl`;
- volume drivers: `VolumeDriver`, `Option`, `Capabilities`, `DriverContext`,
  `DriverVolume`, `parse_size`;
- snapshot drivers: `SnapshotDriver`, `SnapshotContext`, `SnapshotMount`,
  `Kind`, `Usage`, `ApplyTarget`;
- registration: `KnownImplementation` (a name imported on first use);
- errors: `CargoholdError` and its kinds;
- the runtime (imported on first use): `Runtime`, `Volume`, `VolumeService`,
  `VolumeEvent`, `MountSpec`, `PreparedMount`.

The conformance suites are in `cargohold.core.testing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from cargohold.core.api.errors import (
    CargoholdError,
    Conflict,
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unavailable,
)
from cargohold.core.api.hookspecs import PROJECT
from cargohold.core.api.registration import KnownImplementation
from cargohold.core.api.volume_driver import (
    Capabilities,
    DriverContext,
    DriverVolume,
    Option,
    VolumeDriver,
    parse_size,
)

# The snapshot contract and the services are imported on first use: a plugin
# module that only needs `hookimpl` must not pay for them at every command's
# start-up. The type
# checker sees plain imports (and no __getattr__, so a misspelt name is
# still an error).
if TYPE_CHECKING:
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount
    from cargohold.core.api.events import VolumeEvent
    from cargohold.core.api.snapshots import (
        ApplyTarget,
        Kind,
        SnapshotContext,
        SnapshotDriver,
        SnapshotMount,
        Usage,
    )
    from cargohold.core.runtime import Runtime
    from cargohold.core.volumes.service import Volume, VolumeService
else:
    _SNAPSHOTS = "cargohold.core.api.snapshots"
    _LAZY = {
        "ApplyTarget": _SNAPSHOTS,
        "Kind": _SNAPSHOTS,
        "SnapshotContext": _SNAPSHOTS,
        "SnapshotDriver": _SNAPSHOTS,
        "SnapshotMount": _SNAPSHOTS,
        "Usage": _SNAPSHOTS,
        "MountSpec": "cargohold.core.api.container_mounts",
        "PreparedMount": "cargohold.core.api.container_mounts",
        "Runtime": "cargohold.core.runtime",
        "Volume": "cargohold.core.volumes.service",
        "VolumeEvent": "cargohold.core.api.events",
        "VolumeService": "cargohold.core.volumes.service",
    }

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


#: Marks a plugin's hook implementations: ``@hookimpl def cargohold_volume_drivers(): ...``
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "ApplyTarget",
    "Capabilities",
    "CargoholdError",
    "Conflict",
    "DriverContext",
    "DriverVolume",
    "InUse",
    "InvalidArgument",
    "Kind",
    "KnownImplementation",
    "MountSpec",
    "NotFound",
    "NotSupported",
    "Option",
    "PreparedMount",
    "Runtime",
    "SnapshotContext",
    "SnapshotDriver",
    "SnapshotMount",
    "Unavailable",
    "Usage",
    "Volume",
    "VolumeDriver",
    "VolumeEvent",
    "VolumeService",
    "hookimpl",
    "parse_size",
]
