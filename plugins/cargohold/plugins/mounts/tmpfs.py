"""The ``tmpfs`` mount type: a fresh tmpfs in the container's mount namespace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cargohold.core import hookimpl

if TYPE_CHECKING:
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount
    from cargohold.core.containers.records import Container
    from cargohold.core.runtime import Runtime

TMPFS = "tmpfs"


class TmpfsMounts:
    """A tmpfs lives and dies with the container's mount namespace: only start has work."""

    @hookimpl
    def cargohold_mount_types(self) -> Sequence[str]:
        return [TMPFS]

    @hookimpl
    def cargohold_attach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> Sequence[MountSpec] | None:
        return [spec] if spec.type == TMPFS else None

    @hookimpl
    def cargohold_prepare_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> PreparedMount | None:
        if spec.type != TMPFS:
            return None
        from cargohold.core.api.container_mounts import PreparedMount
        from cargohold.core.kernel import mounts

        flags, data = mounts.parse_options(spec.options.get("tmpfs", ""))
        return PreparedMount(
            spec.target, "tmpfs", fstype="tmpfs", data=data, flags=flags, readonly=spec.readonly
        )

    @hookimpl
    def cargohold_release_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> bool | None:
        return True if spec.type == TMPFS else None

    @hookimpl
    def cargohold_detach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime, remove_volumes: bool
    ) -> bool | None:
        return True if spec.type == TMPFS else None


plugin = TmpfsMounts()
