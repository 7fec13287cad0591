"""The ``memo`` volume driver: a directory per volume, with a note that travels with it.

``volume create -d memo -o note="build cache" v1`` writes the note to ``MEMO`` in
the volume; ``inspect`` shows it under ``Status``."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cargohold.core import DriverVolume, NotFound, Option, VolumeDriver, hookimpl


class MemoDriver(VolumeDriver):
    name = "memo"
    options = (Option("note", default="", help="a line kept in the volume's MEMO file"),)

    def _existing(self, name: str) -> Path:
        if not (self.root / name).is_dir():
            raise NotFound(f"no such volume: {name}")
        return self.root / name

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        (self.root / name).mkdir(exist_ok=True)
        (self.root / name / "MEMO").write_text(f"{opts.get('note', '')}\n")

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        shutil.rmtree(self._existing(name))  # NotFound if missing, as the contract asks

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        return self._existing(name)  # a plain directory: nothing to set up

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        pass

    def get(self, name: str) -> DriverVolume:
        path = self._existing(name)
        memo = path / "MEMO"
        return DriverVolume(name, path, {"memo": memo.read_text().strip() if memo.exists() else ""})

    def list(self) -> list[DriverVolume]:
        return [self.get(entry.name) for entry in self.root.iterdir() if entry.is_dir()]


@hookimpl
def cargohold_volume_drivers() -> Sequence[type[VolumeDriver]]:
    return [MemoDriver]
