"""The ``local`` driver: Docker's local volumes, same options, same layout.

A volume is ``<root>/<name>/_data``. With ``type``/``device``/``o`` the
device is mounted there on first use and unmounted after the last, exactly as
Docker's local driver does (``-o type=tmpfs -o device=tmpfs -o o=size=64m``,
``-o type=none -o o=bind -o device=/srv/x``, a block device, NFS...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cargohold.core import (
    Capabilities,
    CargoholdError,
    DriverVolume,
    InvalidArgument,
    NotFound,
    NotSupported,
    Option,
    VolumeDriver,
    mounts,
)


class LocalDriver(VolumeDriver):
    name = "local"
    options = (
        Option("type", help="filesystem type to mount, as mount -t (tmpfs, ext4, nfs, none)"),
        Option("device", help="what to mount: a block device, tmpfs, host:/path, or a directory"),
        Option("o", help="mount options, as mount -o (size=64m, bind, addr=...)"),
        Option(
            "size",
            type="size",
            help="limit on the volume's size (needs project quotas on the state dir's filesystem)",
        ),
    )
    capabilities = Capabilities(usage=True)

    def _data(self, name: str) -> Path:
        return self.root / name / "_data"

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        typed = bool(opts.get("type") or opts.get("device"))
        if typed and not (opts.get("type") and opts.get("device")):
            raise InvalidArgument(
                f"volume {name}: options type and device go together "
                "(e.g. -o type=tmpfs -o device=tmpfs)"
            )
        if opts.get("size") is not None and not typed:
            raise NotSupported(
                f"volume {name}: option size needs project quotas, and {self.root} is on a "
                "filesystem mounted without them. Put the state directory on xfs mounted "
                "with prjquota, or use -o type=tmpfs -o device=tmpfs -o o=size=SIZE"
            )
        data = self._data(name)
        data.parent.mkdir(mode=0o701, exist_ok=True)
        data.mkdir(mode=0o755, exist_ok=True)

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        volume_dir = self.root / name
        if not volume_dir.exists():
            raise NotFound(f"no such volume: {name}")
        data = self._data(name)
        if mounts.is_mountpoint(data):
            mounts.umount(data, detach=True)
        shutil.rmtree(volume_dir)

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        data = self._data(name)
        if not data.is_dir():
            raise NotFound(f"no such volume: {name} (its data directory {data} is gone)")
        if opts.get("type") and not mounts.is_mountpoint(data):
            self._mount_device(name, data, opts)
        return data

    def _mount_device(self, name: str, data: Path, opts: Mapping[str, Any]) -> None:
        command = ["mount", "-t", str(opts["type"])]
        if opts.get("o"):
            command += ["-o", str(opts["o"])]
        command += [str(opts["device"]), str(data)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise CargoholdError(
                f"mounting volume {name} ({opts['type']} from {opts['device']}) failed: "
                f"{result.stderr.strip() or result.stdout.strip()}. "
                "Check the type, device and o options"
            )

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        data = self._data(name)
        if opts.get("type") and mounts.is_mountpoint(data):
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
            if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "_data"))
        ]

    def usage(self, name: str) -> int:
        total = 0
        for directory, _, files in os.walk(self._data(name)):
            for file in files:
                with contextlib.suppress(FileNotFoundError):  # deleted while we walk
                    total += os.lstat(os.path.join(directory, file)).st_blocks * 512
        return total
