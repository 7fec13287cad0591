"""Named, lazily built volume drivers, with install hints for missing ones."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import Conflict, InvalidArgument, NotFound
from cargohold.core.api.volume_driver import DriverContext, VolumeDriver
from cargohold.core.volumes.names import validate_driver_name

# Drivers that ship with cargohold behind an extra, so that a user who asks for
# one learns what to install instead of "unknown driver". Each entry lands with
# its driver and extra.
INSTALL_HINTS: dict[str, str] = {
    "s3": "pip install 'cargohold[s3]'",
    "azurefile": "pip install 'cargohold[azure]'",
    "gcs": "pip install 'cargohold[gcs]'",
}


class DriverRegistry:
    """Driver classes collected from ``cargohold_volume_drivers``, built on first use."""

    def __init__(self, hook: Any, root: Path) -> None:
        self._hook = hook
        self._root = root
        self._classes: dict[str, type[VolumeDriver]] | None = None
        self._instances: dict[str, VolumeDriver] = {}
        self._lock = threading.Lock()

    def classes(self) -> dict[str, type[VolumeDriver]]:
        if self._classes is None:
            provided = self._hook.cargohold_volume_drivers()
            self._classes = collect_classes(provided, VolumeDriver, "volume driver")
        return self._classes

    def names(self) -> list[str]:
        return sorted(self.classes())

    def get(self, name: str) -> VolumeDriver:
        """The driver named ``name``, built on first use."""
        validate_driver_name(name)
        with self._lock:
            driver = self._instances.get(name)
            if driver is None:
                cls = self.classes().get(name)
                context = DriverContext(root=self._root / name, hook=self._hook)
                if cls is not None:
                    context.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                    driver = cls(context)
                else:
                    driver = self._hook.cargohold_find_volume_driver(name=name, context=context)
                    if driver is None:
                        raise NotFound(_unknown_driver_message(name, self.names()))
                self._instances[name] = driver
            return driver

    def close(self) -> None:
        with self._lock:
            for driver in self._instances.values():
                driver.close()
            self._instances.clear()


def collect_classes(
    provided: Iterable[Iterable[object]], base: type, what: str
) -> dict[str, type[Any]]:
    """The classes a hook's implementations returned, by their ``name``.

    Refuses (`InvalidArgument`) what is not a concrete, named ``base``
    subclass, and (`Conflict`) classes of two plugins with one name.
    """
    found: dict[str, type[Any]] = {}
    for classes in provided:
        for cls in classes:
            checked = _checked_class(cls, base, what)
            name: str = checked.name
            if name in found and found[name] is not checked:
                raise Conflict(
                    f"two plugins provide a {what} named {name!r}: "
                    f"{_origin(found[name])} and {_origin(checked)}; "
                    "block one with CARGOHOLD_BLOCK_PLUGINS"
                )
            found[name] = checked
    return found


def _checked_class(cls: object, base: type, what: str) -> type[Any]:
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise InvalidArgument(f"{cls!r} is not a {base.__name__} subclass")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise InvalidArgument(f"{what} {_origin(cls)} does not implement: {missing}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} {_origin(cls)} has no name")
    return cls


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _unknown_driver_message(name: str, known: list[str]) -> str:
    message = f"no volume driver named {name!r}"
    if hint := INSTALL_HINTS.get(name):
        return f"{message}: it ships as an extra, install it with {hint}"
    return f"{message}; installed drivers: {', '.join(known) or 'none'}"
