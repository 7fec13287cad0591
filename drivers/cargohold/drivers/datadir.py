"""Docker's volume layout, shared by the local and bind drivers: volume ``name``
is the directory ``<root>/<name>/_data``, so the volume exists while it does."""

from __future__ import annotations

import os
from pathlib import Path

from cargohold.core import DriverVolume, NotFound, VolumeDriver


class DataDirDriver(VolumeDriver):
    """A `VolumeDriver` whose volumes are ``<root>/<name>/_data`` directories."""

    def _data(self, name: str) -> Path:
        return self.root / name / "_data"

    def get(self, name: str) -> DriverVolume:
        # the engine asks Get often: one string and one stat, not pathlib's joins
        data = f"{self.root}/{name}/_data"
        if not os.path.isdir(data):
            raise NotFound(f"no such volume: {name}")
        return DriverVolume(name, Path(data))

    def list(self) -> list[DriverVolume]:
        return [
            DriverVolume(entry.name, Path(entry.path) / "_data")
            for entry in os.scandir(self.root)
            if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "_data"))
        ]
