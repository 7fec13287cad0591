"""cargohold's runtime core: contracts, services and the hooks plugins implement."""

from __future__ import annotations

import pluggy

from cargohold.core.driver import (
    Capabilities,
    DriverContext,
    DriverVolume,
    Option,
    VolumeDriver,
    parse_size,
)
from cargohold.core.errors import (
    CargoholdError,
    Conflict,
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unavailable,
)
from cargohold.core.events import VolumeEvent
from cargohold.core.hookspecs import PROJECT
from cargohold.core.runtime import Runtime
from cargohold.core.volumes import Volume, VolumeService

#: Marks a plugin's hook implementations: ``@hookimpl def cargohold_volume_drivers(): ...``
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "Capabilities",
    "CargoholdError",
    "Conflict",
    "DriverContext",
    "DriverVolume",
    "InUse",
    "InvalidArgument",
    "NotFound",
    "NotSupported",
    "Option",
    "Runtime",
    "Unavailable",
    "Volume",
    "VolumeDriver",
    "VolumeEvent",
    "VolumeService",
    "hookimpl",
    "parse_size",
]
