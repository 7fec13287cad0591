"""Copy-on-write layers: the snapshotter contract, shaped like containerd's.

Glossary
--------
snapshot
    A directory tree that is either being written (``active``), frozen
    (``committed``) or a read-only look at a frozen one (``view``). Image
    layers become a chain of committed snapshots; a container's root
    filesystem is an active snapshot on top of the image's top layer.
key
    The name a caller gives a snapshot. Active and view snapshots are known
    by the key given to `Snapshotter.prepare` / `Snapshotter.view`; committing
    renames: `Snapshotter.commit` ``(name, key)`` turns active ``key`` into
    committed ``name``. Keys are unique per snapshotter. Image layers use
    their chain id (``sha256:...``) as the committed name.
parent
    The committed snapshot a new one starts from (``None``: start empty). A
    snapshot with children cannot be removed.
mounts
    What makes a snapshot visible: a list of `SnapshotMount` values that, applied
    in order to one target directory (``kernel.snapshot_mounts.mount_all``), give
    the snapshot's tree.
    Callers never look inside a snapshotter's storage; they mount.
snapshot driver
    The plugin that moves bytes (`SnapshotDriver`): overlay, copy, btrfs, or
    a third party's. It sees opaque ids and the ids of the parent chain,
    never keys, and keeps no metadata of its own.

Who owns what: `Snapshotter` (the core) keeps every snapshot's key, kind,
parent, labels and times in SQLite (``<state>/snapshots.db``, one table, a
row per snapshot, shared by every snapshotter, separate from the volume
store so that image churn never contends with volume transactions) and
refuses what containerd refuses (removing a parent, committing a view,
reusing a key). The `SnapshotDriver` creates, mounts and deletes data by id.

Drivers are registered with the `cargohold_snapshotters` hook; the runtime
exposes them as ``runtime.snapshotters.get(name) -> Snapshotter`` and
``runtime.snapshotters.default()``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple


class Kind(StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


# -- mounts ------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotMount:
    """One mount that, with the others of its list, makes a snapshot visible.

    ``type`` is a filesystem type for mount(2) (``overlay``) or ``bind``.
    ``options`` are containerd-style strings: flags (``ro``, ``rbind``,
    ``nosuid``, ...) and ``key=value`` data (``lowerdir=...``). For overlay,
    ``lowerdir`` lists layers top first, separated by ``:``; it may be longer
    than the kernel's one-page limit: the kernel room then adds the layers one by
    one through the new mount API.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    def option(self, name: str) -> str | None:
        """The value of ``name=value`` in `options`, or None."""
        prefix = name + "="
        for opt in self.options:
            if opt.startswith(prefix):
                return opt[len(prefix) :]
        return None

    def to_dict(self) -> dict[str, Any]:
        """containerd's JSON shape: ``{"Type", "Source", "Options"}``."""
        return {"Type": self.type, "Source": self.source, "Options": list(self.options)}


# -- what snapshot drivers implement ----------------------------------------


# Small value records are NamedTuples: a frozen dataclass costs every command ~1 ms to define.
class Usage(NamedTuple):
    """Disk use of one snapshot's own data (not its parents')."""

    size: int = 0
    inodes: int = 0


#: How a layer diff is written into a snapshot directly (see `SnapshotDriver.apply_dir`).
#: ``overlay``: the directory is an overlay upper dir; whiteouts are written
#: in overlay's native form (a 0/0 character device, ``trusted.overlay.opaque``).
#: ``merged``: the directory holds the full tree; whiteouts delete paths.
WhiteoutStyle = Literal["overlay", "merged"]


class ApplyTarget(NamedTuple):
    """Where and how a layer diff is written straight into a snapshot's data.

    ``lowers`` (overlay style only) are the parents' directories, nearest
    first: the applier looks there for what the upper directory lacks.
    """

    path: Path
    style: WhiteoutStyle
    lowers: tuple[Path, ...] = ()


class SnapshotContext(NamedTuple):
    """What the core hands a snapshot driver: ``root`` is its private data area."""

    root: Path


class SnapshotDriver(abc.ABC):
    """The bytes behind snapshots. Plugins subclass this.

    Every method gets the snapshot's opaque ``sid`` (a short string, safe as a
    file name) and, where the data depends on them, ``parents``: the ids of
    the committed parent chain, nearest first. The core guarantees parents
    are committed and unchanging, calls are never concurrent for one ``sid``,
    and metadata lives in the core: a driver keeps none.
    """

    #: The name users pass as ``--snapshotter``.
    name: ClassVar[str]

    def __init__(self, context: SnapshotContext) -> None:
        self.context = context

    @property
    def root(self) -> Path:
        return self.context.root

    @classmethod
    def unsupported_reason(cls, root: Path) -> str | None:
        """Why this driver cannot keep data under ``root`` here, or None if it can.

        Used to choose the default snapshotter; keep it quick (a few syscalls).
        ``root`` may not exist yet.
        """
        return None

    @abc.abstractmethod
    def create(self, sid: str, parents: Sequence[str], kind: Kind) -> None:
        """Make the data of a new active or view snapshot (empty or from ``parents``)."""

    @abc.abstractmethod
    def mounts(self, sid: str, parents: Sequence[str], kind: Kind) -> list[SnapshotMount]:
        """The mounts showing snapshot ``sid``: writable if active, read-only if a view."""

    def commit(self, sid: str, parents: Sequence[str]) -> None:  # noqa: B027 - often nothing
        """Freeze active ``sid``: it will only be read from now on (as a parent or view)."""

    @abc.abstractmethod
    def remove(self, sid: str) -> None:
        """Delete the data of ``sid``; no error if there is none (a retried remove)."""

    @abc.abstractmethod
    def usage(self, sid: str, parents: Sequence[str]) -> Usage:
        """Disk use of ``sid``'s own data."""

    def ids(self) -> list[str]:
        """Ids holding data, for cleaning up after a crash (default: names under root)."""
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.name.isdigit()]

    def apply_dir(self, sid: str, parents: Sequence[str]) -> ApplyTarget | None:
        """A directory where a layer diff can be written without mounting, and how.

        Optional, for speed: None (the default) makes the core mount the
        active snapshot and apply the diff through the mount.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release resources; the runtime is shutting down."""


# -- what the core offers: metadata + driver ---------------------------------


@dataclass(frozen=True)
class Info:
    """What `Snapshotter.stat` and `Snapshotter.walk` report, as containerd's ``Info``."""

    key: str
    kind: Kind
    parent: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
