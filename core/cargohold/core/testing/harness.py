"""The harness the volume-driver suite runs on: a fresh `Runtime` and a counted driver."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cargohold.core import hookimpl
from cargohold.core.api.errors import CargoholdError
from cargohold.core.api.volume_driver import Option, VolumeDriver, parse_bool, parse_size
from cargohold.core.kernel import mounts
from cargohold.core.runtime import Runtime
from cargohold.core.volumes import secret_refs
from cargohold.core.volumes.service import VolumeService, check_options

__all__ = [
    "BAD_NAMES",
    "DriverCalls",
    "Harness",
    "ProvideDriver",
    "different_value",
    "new_mount_id",
    "new_name",
]

#: Names every driver must never see: the core refuses them first.
BAD_NAMES: tuple[str, ...] = ("../x", "..", "a/b", "/etc", "", "a", "x" * 300, "bad\0name")

_COUNTED = ("create", "remove", "mount", "unmount", "get", "list")


class DriverCalls:
    """Every call made into one driver, recorded by wrapping its methods."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        #: changing calls that began while another was running for the same volume
        self.overlaps: list[tuple[str, str]] = []
        self._running: dict[str, int] = {}
        self._guard = threading.Lock()

    def wrap(self, driver: VolumeDriver) -> None:
        for method in _COUNTED:
            original: Callable[..., Any] = getattr(driver, method)
            setattr(driver, method, self._recorder(method, original))

    def _recorder(self, method: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def record(*args: Any) -> Any:
            # reads (get, list) may run unlocked; calls that change a volume may not overlap
            volume = str(args[0]) if args and method not in ("get", "list") else ""
            with self._guard:
                self.calls.append((method, args))
                if volume and self._running.get(volume):
                    self.overlaps.append((method, volume))
                self._running[volume] = self._running.get(volume, 0) + 1
            try:
                return original(*args)
            finally:
                with self._guard:
                    self._running[volume] -= 1  # "" counts the reads, never checked

        return record

    def count(self, method: str, *leading: Any) -> int:
        """Calls of ``method`` whose first arguments are ``leading``."""
        return sum(
            1
            for name, args in self.calls
            if name == method and args[: len(leading)] == tuple(leading)
        )

    def changing(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The calls that could change something (everything but get and list)."""
        return [(name, args) for name, args in self.calls if name not in ("get", "list")]

    def clear(self) -> None:
        self.calls.clear()


class ProvideDriver:
    """The smallest plugin: it registers one driver class."""

    def __init__(self, cls: type[VolumeDriver]) -> None:
        self.cls = cls

    @hookimpl
    def cargohold_volume_drivers(self) -> Sequence[type[VolumeDriver]]:
        return [self.cls]


class Harness:
    """A runtime on a private state directory with the driver under test in it."""

    def __init__(self, state_dir: Path, plugin: object, driver_name: str) -> None:
        self.state_dir = state_dir
        self.plugin = plugin
        self.driver_name = driver_name
        self.calls = DriverCalls()
        self.runtime = self._start()

    def _start(self) -> Runtime:
        runtime = Runtime(self.state_dir, autoload=False, plugins=[self.plugin])
        try:
            self.calls.wrap(runtime.drivers.get(self.driver_name))
        except BaseException:
            runtime.close()
            raise
        return runtime

    @property
    def volumes(self) -> VolumeService:
        return self.runtime.volumes

    @property
    def driver(self) -> VolumeDriver:
        return self.runtime.drivers.get(self.driver_name)

    def restart(self) -> None:
        """Close the runtime and open a new one on the same state, as after a restart."""
        self.runtime.close()
        self.runtime = self._start()

    def create(self, name: str, opts: Mapping[str, str], **labels: str) -> None:
        self.volumes.create(name, self.driver_name, opts, labels)

    def driver_opts(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """What the core hands the driver for ``raw``: checked, converted, secrets resolved."""
        typed = check_options(self.driver, raw)
        for option in self.driver.options:
            if option.secret and typed.get(option.name) is not None:
                ref = str(typed[option.name])
                typed[option.name] = secret_refs.resolve(self.runtime.hook, option.name, ref)
        return typed

    def on_disk(self) -> set[str]:
        """Every path under the driver's root and the lock directory (not into mounts)."""
        found: set[str] = set()
        for top in (self.driver.root, self.state_dir / "locks"):
            for directory, dirs, files in os.walk(top):
                for entry in dirs + files:
                    found.add(os.path.relpath(os.path.join(directory, entry), self.state_dir))
        return found

    def close(self) -> None:
        """Unmount and remove every volume left, then close; detach stray mounts last.

        Volumes a test made on the driver directly are removed too, so a driver
        with remote storage is not left holding them when a test fails midway.
        """
        try:
            known = set()
            for volume in self.volumes.list():
                known.add(volume.name)
                for mount_id, count in volume.refs.items():
                    for _ in range(count):
                        self.volumes.unmount(volume.name, mount_id)
                self.volumes.remove(volume.name)
            for method, args in self.calls.calls:
                if method == "create" and args[0] not in known:
                    known.add(args[0])
                    with contextlib.suppress(CargoholdError):
                        self.driver.unmount(args[0], "conformance-cleanup", args[1])
                        self.driver.remove(args[0], args[1])
        finally:
            self.runtime.close()
            for entry in mounts.mounts_under(self.state_dir):
                mounts.umount(entry.target, detach=True)


def new_name() -> str:
    return f"cv-{secrets.token_hex(5)}"


def new_mount_id() -> str:
    return secrets.token_hex(32)  # what Docker sends: 64 hex digits


def different_value(option: Option, current: str | None) -> str:
    """A valid value for ``option`` other than ``current`` (or its default)."""
    was = current if current is not None else option.default
    if option.choices:
        return next(c for c in option.choices if c != was)
    if option.type == "bool":
        return "false" if was is not None and parse_bool(str(was)) else "true"
    if option.type == "size":
        return str(parse_size(str(was)) * 2) if was is not None else "1m"
    if option.type == "int":
        return str(int(was) + 1) if was is not None else "1"
    return f"{was}-other" if was is not None else "conformance"
