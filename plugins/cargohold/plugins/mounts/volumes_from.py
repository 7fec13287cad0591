"""The ``volumes-from`` mount type: another container's volumes and bind mounts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from cargohold.core import InvalidArgument, NotFound, hookimpl

if TYPE_CHECKING:
    from cargohold.core.api.container_mounts import MountSpec
    from cargohold.core.containers.records import Container
    from cargohold.core.runtime import Runtime

VOLUMES_FROM = "volumes-from"
# As Docker: tmpfs mounts belong to their container alone.
_SHARED_TYPES = ("volume", "bind")


class VolumesFromMounts:
    """Expands at create into the other container's mounts; their own types do the rest."""

    @hookimpl
    def cargohold_mount_types(self) -> Sequence[str]:
        return [VOLUMES_FROM]

    @hookimpl
    def cargohold_attach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> Sequence[MountSpec] | None:
        if spec.type != VOLUMES_FROM:
            return None
        try:
            other = runtime.containers.get(spec.source)
        except NotFound:
            raise NotFound(
                f"no such container: {spec.source} (from --volumes-from): create it first, "
                "or check the name with cargohold ps -a"
            ) from None
        if other.id == container.id:
            raise InvalidArgument("a container cannot take volumes from itself")
        mode = spec.options.get("mode", "")
        taken = []
        for m in other.mounts:
            if m.type not in _SHARED_TYPES:
                continue
            options = {k: v for k, v in m.options.items() if k != "anonymous"}
            readonly = m.readonly if not mode else mode == "ro"
            taken.append(replace(m, readonly=readonly, options=options))
        return taken


plugin = VolumesFromMounts()
