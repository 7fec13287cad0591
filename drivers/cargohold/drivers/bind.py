"""The ``bind`` driver: a named volume that is a host directory.

The directory is bind-mounted (a real kernel mount) at ``<root>/<name>/_data``
so that ``readonly`` and ``propagation`` take effect whoever uses the path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cargohold.core import DriverVolume, InvalidArgument, NotFound, Option, VolumeDriver, mounts


class BindDriver(VolumeDriver):
    name = "bind"
    options = (
        Option("source", required=True, help="absolute path of the host directory"),
        Option(
            "create",
            type="bool",
            default=False,
            help="create the source directory if it is missing (default: refuse)",
        ),
        Option("readonly", type="bool", default=False, help="mount read-only"),
        Option(
            "propagation",
            choices=tuple(mounts.PROPAGATION),
            help="mount propagation (rprivate, rshared, rslave, ...)",
        ),
    )

    def _data(self, name: str) -> Path:
        return self.root / name / "_data"

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        source = Path(str(opts["source"]))
        if not source.is_absolute():
            raise InvalidArgument(f"volume {name}: source {source} must be an absolute path")
        if source.exists() and not source.is_dir():
            raise InvalidArgument(f"volume {name}: source {source} is not a directory")
        if not source.exists():
            if not opts.get("create"):
                raise NotFound(
                    f"volume {name}: source {source} does not exist; "
                    "create it, or pass -o create=true"
                )
            source.mkdir(parents=True, exist_ok=True)
        self._data(name).mkdir(parents=True, exist_ok=True)

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        volume_dir = self.root / name
        if not volume_dir.exists():
            raise NotFound(f"no such volume: {name}")
        data = self._data(name)
        if mounts.is_mountpoint(data):
            mounts.umount(data, detach=True)
        # Only our mountpoint goes; the host directory is the user's.
        shutil.rmtree(volume_dir)

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        data = self._data(name)
        if not data.is_dir():
            raise NotFound(f"no such volume: {name}")
        source = Path(str(opts["source"]))
        if not source.is_dir():
            raise NotFound(f"volume {name}: source directory {source} is gone; recreate it")
        if not mounts.is_mountpoint(data):
            mounts.bind(
                source,
                data,
                readonly=bool(opts.get("readonly")),
                propagation=opts.get("propagation"),
            )
        return data

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        data = self._data(name)
        if mounts.is_mountpoint(data):
            mounts.umount(data)

    def get(self, name: str) -> DriverVolume:
        data = self._data(name)
        if not data.is_dir():
            raise NotFound(f"no such volume: {name}")
        return DriverVolume(name, data)

    def list(self) -> list[DriverVolume]:
        return [
            DriverVolume(entry.name, Path(entry.path) / "_data")
            for entry in os.scandir(self.root)
            if entry.is_dir()
        ]
