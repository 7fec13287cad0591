"""The ``volume`` mount type: named and anonymous volumes from the volume service."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from cargohold.core import CargoholdError, InvalidArgument, NotFound, hookimpl
from cargohold.core.api.logs import get_logger

# Every command loads this plugin: the container machinery (and the mount
# spec types) are imported by the hooks, which only container commands call.
if TYPE_CHECKING:
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount
    from cargohold.core.containers.records import Container
    from cargohold.core.runtime import Runtime

log = get_logger(__name__)

VOLUME = "volume"


class VolumeMounts:
    """Reserves a volume at create, mounts it at start, gives it back at stop and remove."""

    @hookimpl
    def cargohold_mount_types(self) -> Sequence[str]:
        return [VOLUME]

    @hookimpl
    def cargohold_attach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> Sequence[MountSpec] | None:
        if spec.type != VOLUME:
            return None
        service = runtime.volumes
        driver = spec.options.get("driver")
        opts = _prefixed(spec, "volume-opt.")
        labels = _prefixed(spec, "volume-label.")
        if spec.anonymous:
            volume = service.create(None, driver or "local", opts, labels, anonymous=True)
            spec = replace(spec, source=volume.name)
        else:
            try:
                existing = service.get(spec.source)
            except NotFound:
                service.create(spec.source, driver or "local", opts, labels)
            else:
                if driver and existing.driver != driver:
                    raise InvalidArgument(
                        f"volume {spec.source} exists with driver {existing.driver}, "
                        f"not {driver}: drop volume-driver or use another name"
                    )
        try:
            service.hold(spec.source, container.id)
        except BaseException:
            if spec.anonymous:
                service.remove(spec.source, force=True)
            raise
        return [spec]

    @hookimpl
    def cargohold_prepare_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> PreparedMount | None:
        if spec.type != VOLUME:
            return None
        from cargohold.core.api.container_mounts import PreparedMount

        path = runtime.volumes.mount(spec.source, container.id)
        return PreparedMount(
            spec.target,
            str(path),
            readonly=spec.readonly,
            fill_from_image=spec.options.get("nocopy") != "true",
        )

    @hookimpl
    def cargohold_release_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> bool | None:
        if spec.type != VOLUME:
            return None
        with contextlib.suppress(NotFound):
            runtime.volumes.unmount(spec.source, container.id)
        return True

    @hookimpl
    def cargohold_detach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime, remove_volumes: bool
    ) -> bool | None:
        if spec.type != VOLUME:
            return None
        runtime.volumes.release(spec.source, container.id)
        if remove_volumes and spec.anonymous:
            try:
                runtime.volumes.remove(spec.source, force=True)
            except CargoholdError as err:  # still used by a container that took it
                log.warning("anonymous volume %s kept: %s", spec.source, err)
        return True


def _prefixed(spec: MountSpec, prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in spec.options.items() if k.startswith(prefix)}


plugin = VolumeMounts()
