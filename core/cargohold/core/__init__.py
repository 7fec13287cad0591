"""cargohold's runtime core: contracts, services and the hooks plugins implement."""

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
from cargohold.core.api.volume_driver import (
    Capabilities,
    DriverContext,
    DriverVolume,
    Option,
    VolumeDriver,
    parse_size,
)

# Runtime, Volume, VolumeEvent and VolumeService are imported on first use: a
# plugin module that only needs `hookimpl` must not pay for the services at
# every command's start-up. The type checker sees plain imports (and no
# __getattr__, so a misspelt name is still an error).
if TYPE_CHECKING:
    from cargohold.core.api.events import VolumeEvent
    from cargohold.core.runtime import Runtime
    from cargohold.core.volumes.service import Volume, VolumeService
else:
    _LAZY = {
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
