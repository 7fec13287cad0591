"""The built-in container mount types and the default root filesystem, as hook plugins.

Each type answers the four mount hooks for its own specs only:

``volume``
    named and anonymous volumes, through ``runtime.volumes`` (any driver,
    including remote Docker plugins). Held for the container from create to
    remove, mounted (a reference with the container id as mount id) from
    start to stop, pre-filled from the image unless ``nocopy``.
``bind``
    a host path; ``-v`` makes a missing directory, ``--mount`` refuses.
``tmpfs``
    a fresh tmpfs in the container's mount namespace.
``volumes-from``
    expands, at create, into every volume and bind mount of another
    container (``:ro``/``:rw`` override their modes).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from cargohold.core import CargoholdError, InvalidArgument, NotFound, hookimpl

# Every command loads this plugin: the container machinery (and the mount
# spec types) are imported by the hooks, which only container commands call.
if TYPE_CHECKING:
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount
    from cargohold.core.containers.service import Container, Rootfs
    from cargohold.core.images.store import Image
    from cargohold.core.runtime import Runtime

log = logging.getLogger(__name__)


@hookimpl
def cargohold_mount_types() -> Sequence[str]:
    from cargohold.core.api.container_mounts import BIND, TMPFS, VOLUME, VOLUMES_FROM

    return [VOLUME, BIND, TMPFS, VOLUMES_FROM]


# -- create ----------------------------------------------------------------------


@hookimpl
def cargohold_attach_mount(
    spec: MountSpec, container: Container, runtime: Runtime
) -> Sequence[MountSpec] | None:
    from cargohold.core.api.container_mounts import BIND, TMPFS, VOLUME, VOLUMES_FROM

    if spec.type == VOLUME:
        return [_attach_volume(spec, container, runtime)]
    if spec.type == BIND:
        _check_bind(spec, container)
        return [spec]
    if spec.type == TMPFS:
        return [spec]
    if spec.type == VOLUMES_FROM:
        return _expand_volumes_from(spec, container, runtime)
    return None


def _attach_volume(spec: MountSpec, container: Container, runtime: Runtime) -> MountSpec:
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
                    f"volume {spec.source} exists with driver {existing.driver}, not {driver}: "
                    "drop volume-driver or use another name"
                )
    try:
        service.hold(spec.source, container.id)
    except BaseException:
        if spec.anonymous:
            service.remove(spec.source, force=True)
        raise
    return spec


def _prefixed(spec: MountSpec, prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in spec.options.items() if k.startswith(prefix)}


def _check_bind(spec: MountSpec, container: Container) -> None:
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


def _expand_volumes_from(
    spec: MountSpec, container: Container, runtime: Runtime
) -> list[MountSpec]:
    from cargohold.core.api.container_mounts import BIND, VOLUME

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
        if m.type not in (VOLUME, BIND):
            continue  # as Docker: tmpfs mounts belong to their container alone
        options = {k: v for k, v in m.options.items() if k != "anonymous"}
        readonly = m.readonly if not mode else mode == "ro"
        taken.append(replace(m, readonly=readonly, options=options))
    return taken


# -- start and stop -------------------------------------------------------------


@hookimpl
def cargohold_prepare_mount(
    spec: MountSpec, container: Container, runtime: Runtime
) -> PreparedMount | None:
    from cargohold.core.api.container_mounts import BIND, TMPFS, VOLUME, PreparedMount

    if spec.type == VOLUME:
        path = runtime.volumes.mount(spec.source, container.id)
        return PreparedMount(
            spec.target,
            str(path),
            readonly=spec.readonly,
            fill_from_image=spec.options.get("nocopy") != "true",
        )
    if spec.type == BIND:
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
    if spec.type == TMPFS:
        from cargohold.core.kernel import mounts

        flags, data = mounts.parse_options(spec.options.get("tmpfs", ""))
        return PreparedMount(
            spec.target, "tmpfs", fstype="tmpfs", data=data, flags=flags, readonly=spec.readonly
        )
    return None


@hookimpl
def cargohold_release_mount(spec: MountSpec, container: Container, runtime: Runtime) -> bool | None:
    from cargohold.core.api.container_mounts import BIND, TMPFS, VOLUME

    if spec.type == VOLUME:
        with contextlib.suppress(NotFound):
            runtime.volumes.unmount(spec.source, container.id)
        return True
    if spec.type in (BIND, TMPFS):
        return True  # nothing was taken on the host
    return None


@hookimpl
def cargohold_detach_mount(
    spec: MountSpec, container: Container, runtime: Runtime, remove_volumes: bool
) -> bool | None:
    from cargohold.core.api.container_mounts import BIND, TMPFS, VOLUME

    if spec.type == VOLUME:
        runtime.volumes.release(spec.source, container.id)
        if remove_volumes and spec.anonymous:
            try:
                runtime.volumes.remove(spec.source, force=True)
            except CargoholdError as err:  # still used by a container that took it
                log.warning("anonymous volume %s kept: %s", spec.source, err)
        return True
    if spec.type in (BIND, TMPFS):
        return True
    return None


# -- the root filesystem ----------------------------------------------------------


@hookimpl(trylast=True)
def cargohold_rootfs(container: Container, image: Image, runtime: Runtime) -> Rootfs:
    """The image's layers in the default snapshotter, and a writable snapshot on top."""
    from cargohold.core.containers.service import CONTAINER_LABEL, Rootfs

    snapshotter = runtime.snapshotters.default()
    parent = runtime.images.unpacked_chain(image, snapshotter)
    key = f"container-{container.id}"
    snapshotter.prepare(key, parent, labels={CONTAINER_LABEL: container.id})
    return Rootfs(snapshotter.name, key)
