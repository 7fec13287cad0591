"""Every hook cargohold calls, in one place.

Plugins implement these with ``@cargohold.core.hookimpl``. Each docstring is
the hook's reference documentation; ``docs/hooks.md`` repeats every hook and a
test keeps the two in step.

Hooks fall into four kinds:

registration
    a plugin tells the core what it provides (drivers);
policy
    a plugin may veto an operation by raising `CargoholdError`;
resolution
    the first plugin that knows the answer gives it (``firstresult``);
observation and extension
    plugins hear about events, add commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from cargohold.core.api.arrays import BlockArray
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount
    from cargohold.core.api.events import VolumeEvent
    from cargohold.core.api.snapshots import SnapshotDriver
    from cargohold.core.api.volume_driver import DriverContext, VolumeDriver

    # container hooks: these modules import nothing from here at run time
    from cargohold.core.containers.service import Container, ContainerEvent, Rootfs
    from cargohold.core.runtime import Runtime

PROJECT = "cargohold"
hookspec = pluggy.HookspecMarker(PROJECT)


# -- registration ------------------------------------------------------------


@hookspec
def cargohold_volume_drivers() -> Sequence[type[VolumeDriver]]:
    """Return the volume-driver classes this plugin provides.

    The core builds each driver lazily, on first use, as ``cls(context)``
    with a `DriverContext` whose ``root`` is the driver's private data area.
    Keep this hook cheap: import heavy SDKs inside the driver module, which
    this hook imports only when called. Two plugins providing the same driver
    name is an error reported when drivers are collected.
    """
    raise NotImplementedError


@hookspec
def cargohold_snapshotters() -> Sequence[type[SnapshotDriver]]:
    """Return the snapshot-driver classes (copy-on-write layers) this plugin provides.

    Each is a `cargohold.core.api.snapshots.SnapshotDriver` subclass with a unique
    ``name`` (built in: ``overlay``, ``copy``, ``btrfs``). The core builds one
    lazily as ``cls(SnapshotContext(root))``, ``root`` being
    ``<state>/snapshots/<name>``, and wraps it in a `Snapshotter` that keeps
    all snapshot metadata: the driver only moves bytes. Its classmethod
    ``unsupported_reason(root)`` lets the core skip it when choosing the
    default (``$CARGOHOLD_SNAPSHOTTER`` overrides). Keep this hook cheap:
    import driver modules inside it.
    """
    raise NotImplementedError


@hookspec
def cargohold_block_arrays() -> Sequence[type[BlockArray]]:
    """Return the storage-array backends this plugin provides.

    Each is a `cargohold.core.api.arrays.BlockArray` subclass with a unique
    ``name`` (built in: ``loop``, ``btrfs``) and becomes the volume driver of
    that name: the generic block-volume driver over it, which makes, checks,
    mounts and grows filesystems, so the backend only provisions, snapshots,
    clones and maps volumes. The backend is built on first use as
    ``cls(ArrayContext(root, settings))``, ``settings`` coming from
    ``CARGOHOLD_ARRAY_<NAME>_<KEY>`` variables. Keep this hook cheap: import
    vendor SDKs inside the backend module.
    """
    raise NotImplementedError


@hookspec
def cargohold_mount_types() -> Sequence[str]:
    """Return the container mount types this plugin handles (``volume``, ``bind``...).

    A `MountSpec` whose ``type`` no plugin registered is refused when the
    container is created. Built in: ``volume``, ``bind``, ``tmpfs`` and
    ``volumes-from``. A plugin that registers a type answers the four mount
    hooks below for specs of that type (and returns None for the others).
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def cargohold_find_volume_driver(name: str, context: DriverContext) -> VolumeDriver | None:
    """Build a driver named ``name`` that no plugin registered, or return None.

    Asked only when ``name`` is not among the classes from
    `cargohold_volume_drivers`: this is how drivers found at run time (a
    Docker volume plugin's socket, say) join the registry. ``context.root`` is
    the data area the driver would get. The first non-None answer wins and is
    kept for the runtime's life. A finder that looked and found nothing may
    raise `NotFound` saying where it looked; the core appends that to its own
    "no volume driver named ..." message.
    """


# -- policy ------------------------------------------------------------------


@hookspec
def cargohold_validate_volume(name: str, driver: str, opts: Mapping[str, Any]) -> None:
    """Veto the creation of volume ``name`` by raising a `CargoholdError`.

    Called after the driver's declared options have been checked and
    converted (``opts`` holds the converted values; secret options still hold
    their references, never the secret) and before the driver is called.
    Raise `InvalidArgument` or `Conflict` with a message that says what to
    change. Return value is ignored.
    """


# -- resolution --------------------------------------------------------------


@hookspec(firstresult=True)
def cargohold_resolve_secret(ref: str) -> str | None:
    """Turn a secret reference into the secret, or return None if not yours.

    ``ref`` is the text a user gave for a secret option, such as
    ``env:S3_SECRET`` or ``file:/run/secrets/key``. Built in: ``env:NAME`` and
    ``file:/path``. Recognise your own scheme by its prefix and return the
    value; raise `NotFound` if the scheme is yours but the secret is missing.
    The first non-None answer wins. The core never stores or prints the
    returned value.
    """


@hookspec(firstresult=True)
def cargohold_attach_mount(
    spec: MountSpec, container: Container, runtime: Runtime
) -> Sequence[MountSpec] | None:
    """Check and reserve a mount when a container is created; None if not your type.

    Return the specs to record for the container: usually ``[spec]``
    resolved (an anonymous volume gets its new name), several for
    ``volumes-from`` (every mount of the other container, recorded in its
    place and attached in turn). Reserve what must outlive a stop (the
    volume plugin holds the volume for the container id until removal).
    Raise `CargoholdError` with a clear message to refuse (a bind source that
    is a file where a directory is needed); the core then detaches every
    mount already attached, so a failed create leaves nothing behind.
    """


@hookspec(firstresult=True)
def cargohold_prepare_mount(
    spec: MountSpec, container: Container, runtime: Runtime
) -> PreparedMount | None:
    """Say what to mount where for ``spec`` as the container starts; None if not your type.

    Called in the process that supervises the container, before it starts.
    Mount what must be mounted on the host (a volume driver's ``mount``,
    taking a reference with the container id as mount id) and answer with a
    `PreparedMount`: a host path or a filesystem to mount at ``spec.target``
    inside the container's own mount namespace. Everything taken here is
    given back by `cargohold_release_mount`.
    """


@hookspec(firstresult=True)
def cargohold_release_mount(spec: MountSpec, container: Container, runtime: Runtime) -> bool | None:
    """Give back what `cargohold_prepare_mount` took, as the container stops; None if not yours.

    Return True when handled. Must be idempotent: after a crash it may be
    called for a mount that was never prepared, or twice.
    """


@hookspec(firstresult=True)
def cargohold_detach_mount(
    spec: MountSpec, container: Container, runtime: Runtime, remove_volumes: bool
) -> bool | None:
    """Drop the reservation of `cargohold_attach_mount` as the container is removed.

    ``remove_volumes`` (``rm -v``, ``run --rm``, or undoing a failed create)
    also removes anonymous volumes made for this container. Return True when
    handled, None if not your type. Must be idempotent.
    """


@hookspec(firstresult=True)
def cargohold_rootfs(container: Container, image: Any, runtime: Runtime) -> Rootfs | None:
    """Make the root filesystem of a container being created; first answer wins.

    ``image`` is the image the container is created from (from
    ``runtime.images``). Return a `Rootfs`: a snapshotter name and the key
    of an active snapshot prepared for the container (removed with it), or
    ``snapshotter=None`` and static `Mount` values to mount as the root. The
    built-in plugin unpacks the image into the default snapshotter and
    prepares a writable snapshot keyed by the container id.
    """


# -- observation -------------------------------------------------------------


@hookspec
def cargohold_volume_event(event: VolumeEvent) -> None:
    """Hear about a volume operation that has just succeeded.

    ``event.action`` is one of ``create``, ``remove``, ``mount``, ``unmount``
    and ``prune``. Called synchronously after the volume's lock is released;
    keep it quick and do not raise (errors are logged and ignored).
    """


@hookspec
def cargohold_container_event(event: ContainerEvent) -> None:
    """Hear about a container's lifecycle: it has just happened.

    ``event.action`` is one of ``create``, ``start``, ``die`` (the process
    ended; ``attributes["exitCode"]``), ``stop``, ``destroy`` (removed) and
    ``commit``. Called synchronously; keep it quick and do not raise (errors
    are logged and ignored).
    """


# -- extension ---------------------------------------------------------------


@hookspec
def cargohold_cli(group: click.Group) -> None:
    """Add commands or command groups to the ``cargohold`` command line.

    Called once when the CLI starts, with the top-level `click.Group`. Use
    ``group.add_command`` or look up an existing subgroup with
    ``group.commands["volume"]``. Commands reach the runtime through
    ``cargohold.core.cli.runtime()``, built on first use and closed when the
    command ends.
    """
