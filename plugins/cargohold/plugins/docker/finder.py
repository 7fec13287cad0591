"""The ``docker-client`` plugin: any Docker volume plugin is a driver, found by its name.

Only the hook is here, so loading the plugin (every command does) costs no import
of the protocol client; that comes when a driver name reaches this last finder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cargohold.core import hookimpl

if TYPE_CHECKING:
    from cargohold.core import DriverContext, VolumeDriver


@hookimpl(trylast=True)
def cargohold_find_volume_driver(name: str, context: DriverContext) -> VolumeDriver | None:
    """Last of all finders: a Docker volume plugin named ``name``, where the engine looks."""
    from cargohold.plugins.docker.client import find_driver

    return find_driver(name, context)


def found_volume_drivers() -> list[dict[str, str]]:
    """The Docker volume plugins ``-d NAME`` would find, for ``cargohold driver ls``."""
    from cargohold.plugins.docker.discovery import listing

    return listing()
