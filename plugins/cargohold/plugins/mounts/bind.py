"""The ``bind`` mount type: a host path, checked at create and again at start."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cargohold.core import InvalidArgument, NotFound, hookimpl

if TYPE_CHECKING:
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount
    from cargohold.core.containers.records import Container
    from cargohold.core.runtime import Runtime

BIND = "bind"


class BindMounts:
    """Binds a host path; nothing is taken on the host, so stop and remove have no work."""

    @hookimpl
    def cargohold_mount_types(self) -> Sequence[str]:
        return [BIND]

    @hookimpl
    def cargohold_attach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> Sequence[MountSpec] | None:
        if spec.type != BIND:
            return None
        _check_source(spec, container)
        return [spec]

    @hookimpl
    def cargohold_prepare_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> PreparedMount | None:
        if spec.type != BIND:
            return None
        from cargohold.core.api.container_mounts import PreparedMount

        if not os.path.exists(spec.source):
            raise NotFound(
                f"bind source path does not exist: {spec.source} (for {spec.target}): "
                "it was there when the container was created; recreate it"
            )
        return PreparedMount(
            spec.target,
            spec.source,
            readonly=spec.readonly,
            propagation=spec.options.get("propagation", "rprivate"),
            recursive=spec.options.get("nonrecursive") != "true",
        )

    @hookimpl
    def cargohold_release_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime
    ) -> bool | None:
        return True if spec.type == BIND else None

    @hookimpl
    def cargohold_detach_mount(
        self, spec: MountSpec, container: Container, runtime: Runtime, remove_volumes: bool
    ) -> bool | None:
        return True if spec.type == BIND else None


def _check_source(spec: MountSpec, container: Container) -> None:
    source = spec.source
    if not os.path.lexists(source):
        if spec.options.get("create-source") != "true":
            raise NotFound(
                f"bind source path does not exist: {source} (for {spec.target}): "
                "create it first, or use -v, which creates a missing directory"
            )
        os.makedirs(source, mode=0o755, exist_ok=True)
    if not os.path.exists(source):
        raise NotFound(f"bind source {source} is a broken symlink (for {spec.target})")
    if os.path.isdir(source):
        return
    # A file can only be mounted where a file goes: not where other mounts nest.
    nested = [m.target for m in container.mounts if m.target.startswith(spec.target + "/")]
    if spec.target.endswith("/") or nested:
        raise InvalidArgument(
            f"bind source {source} is a file, but {spec.target} must be a directory"
            f"{' (other mounts go under it: ' + ', '.join(nested) + ')' if nested else ''}: "
            "bind a directory there instead"
        )


plugin = BindMounts()
