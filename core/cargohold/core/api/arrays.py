"""The block-array contract: storage that provisions, snapshots, clones and maps volumes.

Glossary
--------
array
    Storage that holds volumes on its own and maps them to this host on
    request: a SAN (HPE 3PAR, Dell EMC PowerMax, NetApp ONTAP LUNs), a NAS
    (Isilon, ONTAP exports), or a software pool on this host (``loop``: image
    files on loop devices; ``btrfs``: subvolumes). A `BlockArray` subclass is
    the code that speaks to one kind; it is found through the
    ``cargohold_block_arrays`` hook, so a vendor ships its own as a separate
    distribution.
array volume
    What the array calls a LUN, a volume or a subvolume: ``size`` bytes,
    ``thin`` (blocks taken on first write) or thick (reserved at once).
snapshot
    A point-in-time, read-only copy of one array volume, named within it.
clone
    A new, independent, writable volume whose first contents are those of a
    volume or of one of its snapshots (restoring a snapshot is cloning it).
attach
    Mapping a volume to this host: the answer is a block device (``/dev/...``)
    when `BlockArray.presents` is ``block``, or a directory holding the
    volume's files when it is ``filesystem`` (a NAS export, a subvolume).

A backend keeps no metadata of cargohold's (names, labels, references, locks:
those are the volume service's); it may keep what the array itself needs. The
generic block-volume driver (``cargohold.drivers.arrays.block``) puts a
filesystem on a block volume, mounts it and grows it, so a backend only
provisions and maps. Every call may assume the core holds the volume's lock.
The suite `cargohold.core.testing.arrays.BlockArrayConformance` checks a backend.
"""

from __future__ import annotations

import abc
import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

from cargohold.core.api.errors import NotSupported

Presents = Literal["block", "filesystem"]


@dataclass(frozen=True)
class ArrayCapabilities:
    """What a backend can do; the driver and the CLI refuse the rest up front."""

    thin: bool = True
    thick: bool = False
    snapshot: bool = False
    #: a new volume from an existing volume
    clone: bool = False
    #: a new volume from a snapshot (restore)
    clone_from_snapshot: bool = False
    #: grow a volume (never shrink: no filesystem shrinks online)
    resize: bool = False
    #: grow a volume while it is attached and mounted
    online_resize: bool = False
    #: bytes a volume really takes (`BlockArray.usage`)
    usage: bool = False
    #: the array enforces ``size`` itself (a quota), where it presents a filesystem
    enforces_size: bool = False


@dataclass(frozen=True)
class ArrayVolume:
    """One volume as the array reports it (``size`` None: no limit)."""

    name: str
    size: int | None
    thin: bool = True
    #: where it came from: ``VOLUME`` or ``VOLUME@SNAPSHOT``, if the array knows
    source: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ArraySnapshot:
    volume: str
    name: str
    size: int | None
    created_at: str = ""  # RFC 3339, if the array keeps it


@dataclass(frozen=True)
class Capacity:
    """The pool's bytes: ``total``, ``free`` now, ``provisioned`` (sum of volume sizes)."""

    total: int
    free: int
    provisioned: int


@dataclass(frozen=True)
class ArrayContext:
    """What the core hands a backend when it builds one.

    ``root`` is a private data area (created). ``settings`` configures the
    array as a whole (a pool path, an address, a credential reference), read
    from ``CARGOHOLD_ARRAY_<NAME>_<KEY>`` environment variables by default
    (`settings_from_environment`).
    """

    root: Path
    settings: Mapping[str, str] = field(default_factory=dict)


def settings_from_environment(
    array: str, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``CARGOHOLD_ARRAY_LOOP_POOL=/srv/pool`` -> ``{"pool": "/srv/pool"}`` for ``loop``."""
    prefix = f"CARGOHOLD_ARRAY_{array.upper().replace('-', '_')}_"
    source = os.environ if environ is None else environ
    return {k[len(prefix) :].lower(): v for k, v in source.items() if k.startswith(prefix)}


@runtime_checkable
class VolumeSnapshots(Protocol):
    """A volume driver whose volumes keep named snapshots (the block-volume driver).

    The volume service's ``snapshot``, ``snapshots`` and ``remove_snapshot``
    call these under the volume's lock, for ``cargohold volume snapshot``.
    """

    def snapshot(self, name: str, snapshot: str) -> None: ...

    def snapshots(self, name: str) -> list[ArraySnapshot]: ...

    def remove_snapshot(self, name: str, snapshot: str) -> None: ...


class BlockArray(abc.ABC):
    """Base class of every array backend.

    A subclass sets `name`, `capabilities` and `presents`, and implements the
    abstract methods; optional ones raise `NotSupported` unless declared and
    overridden. Errors: `NotFound` for a volume or snapshot that does not
    exist, `Conflict` for one that already does, `InvalidArgument` for a size
    the pool cannot hold or a shrink, `NotSupported` for a pool without a
    needed feature, `Unavailable` when the array cannot be reached. Messages
    name the volume and say what to do.
    """

    name: ClassVar[str]
    capabilities: ClassVar[ArrayCapabilities] = ArrayCapabilities()
    presents: ClassVar[Presents] = "block"
    #: the smallest volume the array makes (a filesystem needs room too)
    min_size: ClassVar[int] = 16 * 1024**2
    #: the size of a volume made without ``size``; None: unlimited (an array that
    #: presents a filesystem and needs no size, such as a subvolume without quota)
    default_size: ClassVar[int | None] = 1024**3

    def __init__(self, context: ArrayContext) -> None:
        self.context = context

    @property
    def root(self) -> Path:
        return self.context.root

    # -- the pool --------------------------------------------------------------

    @abc.abstractmethod
    def capacity(self) -> Capacity:
        """The pool's total, free and provisioned bytes."""

    # -- volumes ---------------------------------------------------------------

    @abc.abstractmethod
    def provision(self, name: str, size: int | None, *, thin: bool = True) -> ArrayVolume:
        """Make a new empty volume of ``size`` bytes; `Conflict` if ``name`` exists.

        ``size`` is None only where `default_size` is None: no limit.
        """

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the volume and its snapshots; `NotFound` if it does not exist.

        Called detached. An array that cannot delete a volume with snapshots
        deletes those first.
        """

    @abc.abstractmethod
    def get(self, name: str) -> ArrayVolume:
        """Report one volume; `NotFound` if it does not exist."""

    @abc.abstractmethod
    def list(self) -> list[ArrayVolume]:
        """Every volume in the pool."""

    # -- host mapping ----------------------------------------------------------

    @abc.abstractmethod
    def attach(self, name: str, *, read_only: bool = False) -> Path:
        """Map the volume to this host; return its block device or directory.

        Attaching an attached volume returns the same path. After a restart of
        the process or the host the mapping may be gone: attach maps it again.
        """

    @abc.abstractmethod
    def attached(self, name: str) -> Path | None:
        """The volume's device or directory if it is mapped to this host now, else None."""

    @abc.abstractmethod
    def detach(self, name: str) -> None:
        """Unmap the volume from this host; a volume not attached is no error."""

    # -- optional --------------------------------------------------------------

    def resize(self, name: str, size: int) -> ArrayVolume:
        """Grow the volume to ``size`` bytes (attached too, with ``online_resize``)."""
        raise NotSupported(f"array {self.name!r} cannot resize volumes")

    def usage(self, name: str) -> int:
        """Bytes the volume really takes in the pool."""
        raise NotSupported(f"array {self.name!r} cannot report usage")

    def snapshot(self, name: str, snapshot: str) -> ArraySnapshot:
        """Take a snapshot of the volume; `Conflict` if the name is taken.

        The caller makes the data consistent first (it freezes a mounted
        filesystem), so a backend only copies.
        """
        raise NotSupported(f"array {self.name!r} cannot snapshot volumes")

    def snapshots(self, name: str) -> builtins.list[ArraySnapshot]:
        """The volume's snapshots, oldest first; `NotFound` if the volume does not exist."""
        raise NotSupported(f"array {self.name!r} cannot snapshot volumes")

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        """Delete one snapshot; `NotFound` if it does not exist."""
        raise NotSupported(f"array {self.name!r} cannot snapshot volumes")

    def clone(self, source: str, name: str, *, snapshot: str | None = None) -> ArrayVolume:
        """Make volume ``name`` from volume ``source`` or, with ``snapshot``, from that
        snapshot of it. The clone is independent: writing one never changes the other."""
        raise NotSupported(f"array {self.name!r} cannot clone volumes")

    def release(self, name: str) -> None:
        """The caller is done with the attachment for now (a volume just made).

        A backend may keep the mapping a while, so that the mount which usually
        follows finds it ready, or end it now: the default `detach`es.
        """
        self.detach(name)

    def mounted(self, name: str) -> None:  # noqa: B027 - optional
        """The attached volume is now mounted, and the mount holds it.

        A backend whose mapping lives only while someone holds it open (a loop
        device with autoclear) lets go of its own hold here, so the mapping
        ends with the mount even if this process dies first.
        """

    def close(self) -> None:  # noqa: B027 - optional, most backends hold nothing
        """Release connections; the runtime is shutting down."""
