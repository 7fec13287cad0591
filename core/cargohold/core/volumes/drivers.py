"""Volume drivers by name: registered classes, built on first use, and drivers found at run time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import NotFound
from cargohold.core.api.volume_driver import DriverContext, VolumeDriver
from cargohold.core.plugin.registry import Registry
from cargohold.core.volumes.names import validate_driver_name


class DriverRegistry:
    """Driver classes collected from ``cargohold_volume_drivers``, built on first use."""

    def __init__(self, hook: Any, root: Path) -> None:
        self._hook = hook
        self._root = root
        self._registry: Registry[VolumeDriver] = Registry(
            hook.cargohold_volume_drivers, VolumeDriver, "volume driver"
        )
        self._instances: dict[str, VolumeDriver] = {}
        self._lock = threading.Lock()

    def classes(self) -> dict[str, type[VolumeDriver]]:
        """Every installed driver class, by name (imported now if need be)."""
        return self._registry.classes()

    def names(self) -> list[str]:
        return self._registry.names()

    def not_installed(self) -> dict[str, str]:
        """Drivers registered but missing their SDK -> the command that installs it."""
        return self._registry.not_installed()

    def get(self, name: str) -> VolumeDriver:
        """The driver named ``name``, built on first use."""
        validate_driver_name(name)
        with self._lock:
            driver = self._instances.get(name)
            if driver is None:
                cls = self._registry.find(name)
                context = DriverContext(root=self._root / name, hook=self._hook)
                if cls is not None:
                    context.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                    driver = cls(context)
                else:
                    try:
                        driver = self._hook.cargohold_find_volume_driver(name=name, context=context)
                    except NotFound as err:
                        # a finder that looked and found nothing says where it looked
                        # (the Docker plugin directories, say): keep both messages
                        raise NotFound(
                            f"{_unknown_driver_message(name, self.names())}; {err}"
                        ) from None
                    if driver is None:
                        raise NotFound(_unknown_driver_message(name, self.names()))
                self._instances[name] = driver
            return driver

    def close(self) -> None:
        with self._lock:
            for driver in self._instances.values():
                driver.close()
            self._instances.clear()


def _unknown_driver_message(name: str, known: list[str]) -> str:
    return f"no volume driver named {name!r}; installed drivers: {', '.join(known) or 'none'}"
