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
    What makes a snapshot visible: a list of `Mount` values that, applied in
    order to one target directory (`mount_all`), give the snapshot's tree.
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
import contextlib
import ctypes
import errno
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from cargohold.core.api.errors import (
    Conflict,
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
)
from cargohold.core.kernel import mounts as kmounts
from cargohold.core.state.database import Database
from cargohold.core.volumes.drivers import collect_classes

log = logging.getLogger(__name__)

#: Environment variable naming the snapshotter to use instead of probing.
SNAPSHOTTER_ENV = "CARGOHOLD_SNAPSHOTTER"

# The kernel copies mount(2)'s data argument into one page.
MOUNT_DATA_LIMIT = 4096 - 1


class Kind(StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


# -- mounts ------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One mount that, with the others of its list, makes a snapshot visible.

    ``type`` is a filesystem type for mount(2) (``overlay``) or ``bind``.
    ``options`` are containerd-style strings: flags (``ro``, ``rbind``,
    ``nosuid``, ...) and ``key=value`` data (``lowerdir=...``). For overlay,
    ``lowerdir`` lists layers top first, separated by ``:``; it may be longer
    than the kernel's one-page limit: `mount` then adds the layers one by
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

    def mount(self, target: str | Path) -> None:
        """Mount this on ``target`` (a directory) in the calling mount namespace."""
        if self.type == "bind":
            kmounts.bind(
                self.source,
                target,
                readonly=self.readonly,
                recursive="rbind" in self.options,
            )
            return
        flags, data = kmounts.parse_options(self.options)
        if self.type == "overlay" and len(data.encode()) > MOUNT_DATA_LIMIT:
            _mount_overlay_long(self, target, flags)
            return
        kmounts.mount(self.source, target, self.type, flags, data or None)

    def to_dict(self) -> dict[str, Any]:
        """containerd's JSON shape: ``{"Type", "Source", "Options"}``."""
        return {"Type": self.type, "Source": self.source, "Options": list(self.options)}


def mount_all(mounts: Sequence[Mount], target: str | Path) -> None:
    """Apply ``mounts`` in order on ``target``; on failure undo what was done."""
    done = 0
    try:
        for m in mounts:
            m.mount(target)
            done += 1
    except BaseException:
        for _ in range(done):
            kmounts.umount(target, detach=True)
        raise


def unmount_all(target: str | Path) -> None:
    """Unmount everything stacked on ``target`` (no error if nothing is).

    Snapshot mounts have no submounts to protect, so no `kmounts.make_private`.
    """
    kmounts.unmount_all(target, private=False)


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], target: str | Path) -> Iterator[Path]:
    """``with mounted(snapshotter.view(...), tmpdir) as root:`` ... unmounted after."""
    mount_all(mounts, target)
    try:
        yield Path(target)
    finally:
        unmount_all(target)


# Long overlay mounts. mount(2) takes at most one page of options: about 55
# layers at typical state-dir path lengths. Kernels from 6.8 accept lower
# layers one at a time through fsconfig("lowerdir+"), with no total limit;
# older kernels get short /proc/self/fd/N names for each layer instead.

_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_RDONLY = 1
_MOVE_MOUNT_F_EMPTY_PATH = 4
_AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

#: Tests turn these off to exercise each way of mounting a deep overlay.
USE_SHARED_DIR_FD = True
USE_NEW_MOUNT_API = True


def _syscall(number: int, *args: Any) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _mount_overlay_long(m: Mount, target: str | Path, flags: int) -> None:
    """Mount an overlay whose options exceed a page, the cheapest way that fits.

    First one mount(2) naming every layer through a single open directory
    (``/proc/<pid>/fd/N/<id>``: about 20 bytes a layer, so some 180 layers
    fit a page); then fsconfig ``lowerdir+`` (Linux 6.8+, no limit); then a
    descriptor per layer. None changes the working directory, so threads are safe.
    """
    if USE_SHARED_DIR_FD and _mount_overlay_shared_fd(m, target, flags):
        return
    if USE_NEW_MOUNT_API:
        try:
            _mount_overlay_fsconfig(m, target, flags)
            return
        except OSError as err:
            if err.errno not in (errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP):
                raise
            log.debug("fsconfig lowerdir+ unavailable (%s); using fd paths", err)
    _mount_overlay_fd_paths(m, target, flags)


def _mount_overlay_shared_fd(m: Mount, target: str | Path, flags: int) -> bool:
    """Mount with paths relative to one directory fd; False if they still do not fit."""
    paths = {
        key: value
        for key, value in (o.partition("=")[::2] for o in m.options)
        if key in ("lowerdir", "upperdir", "workdir")
    }
    every = [p for value in paths.values() for p in value.split(":")]
    if not every or not all(p.startswith("/") for p in every):
        return False
    # string prefix (cheap: compares only the least and greatest path), cut at a "/"
    prefix_text = os.path.commonprefix(every)  # noqa: RUF071 - cut at a "/" below
    common = prefix_text[: prefix_text.rfind("/")] or "/"
    fd = os.open(common, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # /proc/self is a symlink the kernel would resolve again for every layer
        # (a third of the mount's time at 100 layers); its target is our pid as
        # this /proc sees it, which os.getpid() may not be in another pid namespace
        prefix = f"/proc/{os.readlink('/proc/self')}/fd/{fd}"

        cut = len(common) if common != "/" else 0

        def short(path: str) -> str:
            return prefix + path[cut:]

        rewritten = []
        for opt in m.options:
            if kmounts.is_flag(opt):
                continue
            key, _, value = opt.partition("=")
            if key in paths:
                opt = f"{key}={':'.join(short(p) for p in value.split(':'))}"
            rewritten.append(opt)
        data = ",".join(rewritten)
        if len(data.encode()) > MOUNT_DATA_LIMIT:
            return False
        kmounts.mount(m.source, target, "overlay", flags, data)
        return True
    finally:
        os.close(fd)


def _mount_overlay_fsconfig(m: Mount, target: str | Path, flags: int) -> None:
    lower = (m.option("lowerdir") or "").split(":")
    fs_fd = _syscall(_SYS_FSOPEN, b"overlay", _FSOPEN_CLOEXEC)
    try:

        def set_string(key: str, value: str) -> None:
            try:
                _syscall(
                    _SYS_FSCONFIG, fs_fd, _FSCONFIG_SET_STRING, key.encode(), os.fsencode(value), 0
                )
            except OSError as err:
                raise OSError(err.errno, f"overlay option {key}={value}: {err.strerror}") from err

        for layer in lower:
            set_string("lowerdir+", layer)
        for opt in m.options:
            key, sep, value = opt.partition("=")
            if key == "lowerdir" or kmounts.is_flag(opt):
                continue
            if sep:
                set_string(key, value)
            else:
                _syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_SET_FLAG, key.encode(), None, 0)
        _syscall(_SYS_FSCONFIG, fs_fd, _FSCONFIG_CMD_CREATE, None, None, 0)
        attrs = _MOUNT_ATTR_RDONLY if flags & kmounts.MS_RDONLY else 0
        mnt_fd = _syscall(_SYS_FSMOUNT, fs_fd, _FSMOUNT_CLOEXEC, attrs)
        try:
            _syscall(
                _SYS_MOVE_MOUNT,
                mnt_fd,
                b"",
                _AT_FDCWD,
                os.fsencode(str(target)),
                _MOVE_MOUNT_F_EMPTY_PATH,
            )
        finally:
            os.close(mnt_fd)
    finally:
        os.close(fs_fd)


def _mount_overlay_fd_paths(m: Mount, target: str | Path, flags: int) -> None:
    lower = (m.option("lowerdir") or "").split(":")
    fds: list[int] = []
    try:
        for layer in lower:
            fds.append(os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        short = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        rest = [o for o in m.options if not o.startswith("lowerdir=") and not kmounts.is_flag(o)]
        data = ",".join([f"lowerdir={short}", *rest])
        if len(data.encode()) > MOUNT_DATA_LIMIT:
            raise NotSupported(
                f"an overlay of {len(lower)} layers does not fit this kernel's mount options "
                "(one page); use Linux 6.8 or later, or the copy snapshotter"
            )
        kmounts.mount(m.source, target, "overlay", flags, data)
    finally:
        for fd in fds:
            os.close(fd)


# -- what snapshot drivers implement ----------------------------------------


@dataclass(frozen=True)
class Usage:
    """Disk use of one snapshot's own data (not its parents')."""

    size: int = 0
    inodes: int = 0


#: How a layer diff is written into a snapshot directly (see `SnapshotDriver.apply_dir`).
#: ``overlay``: the directory is an overlay upper dir; whiteouts are written
#: in overlay's native form (a 0/0 character device, ``trusted.overlay.opaque``).
#: ``merged``: the directory holds the full tree; whiteouts delete paths.
WhiteoutStyle = Literal["overlay", "merged"]


@dataclass(frozen=True)
class ApplyTarget:
    """Where and how a layer diff is written straight into a snapshot's data.

    ``lowers`` (overlay style only) are the parents' directories, nearest
    first: the applier looks there for what the upper directory lacks.
    """

    path: Path
    style: WhiteoutStyle
    lowers: tuple[Path, ...] = ()


@dataclass(frozen=True)
class SnapshotContext:
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
    def mounts(self, sid: str, parents: Sequence[str], kind: Kind) -> list[Mount]:
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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    snapshotter TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    parent INTEGER REFERENCES snapshots(id),
    labels TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (snapshotter, key)
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""
_SCHEMA_VERSION = 1


class SnapshotMetadata(Database):
    """The snapshots table in ``snapshots.db``; thread- and process-safe (WAL)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, version=_SCHEMA_VERSION, synchronous="NORMAL")


_Row = tuple[int, str, str, int | None, str, str, str]

#: Chains kept per `Snapshotter` before the cache starts over (a few KiB each at most).
_CHAIN_CACHE_SIZE = 512


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _validate_key(key: str, what: str = "snapshot key") -> None:
    if not isinstance(key, str) or not key or len(key) > 1024 or "\x00" in key:
        raise InvalidArgument(f"bad {what} {key!r}: give 1 to 1024 characters, no NUL")


class Snapshotter:
    """A snapshot driver with the core's metadata: the contract callers use.

    Shaped like containerd's ``snapshots.Snapshotter``. Every method raises
    `NotFound` for an unknown key, `Conflict` for a key in use, `InUse` to
    refuse removing a parent, `InvalidArgument` for an operation the
    snapshot's kind does not allow. A failed call leaves no row and no data.
    """

    def __init__(self, driver: SnapshotDriver, metadata: SnapshotMetadata) -> None:
        self.driver = driver
        self.name = driver.name
        self._meta = metadata
        # id -> the ids of it and its ancestors, nearest first. A snapshot's parent
        # never changes and AUTOINCREMENT never reuses an id, so an entry stays right
        # (and unused once its snapshot is gone); deep chains cost a recursive query.
        self._chains: dict[int, tuple[str, ...]] = {}

    # -- lookups -------------------------------------------------------------

    def _row(self, db: sqlite3.Connection, key: str) -> _Row:
        row = db.execute(
            "SELECT id, key, kind, parent, labels, created, updated FROM snapshots"
            " WHERE snapshotter = ? AND key = ?",
            (self.name, key),
        ).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key!r} does not exist in snapshotter {self.name!r}")
        return row  # type: ignore[no-any-return]

    def _chain(self, db: sqlite3.Connection, parent_id: int | None) -> list[str]:
        """The ids of ``parent_id`` and its ancestors, nearest first (cached, else one query).

        ``parent_id`` is a row's parent, so committed: its chain never changes.
        """
        if parent_id is None:
            return []
        chain = self._chains.get(parent_id)
        if chain is None:
            rows = db.execute(
                "WITH RECURSIVE chain(id, parent, depth) AS ("
                " SELECT id, parent, 0 FROM snapshots WHERE id = ?"
                " UNION ALL SELECT s.id, s.parent, c.depth + 1"
                " FROM snapshots s JOIN chain c ON s.id = c.parent)"
                " SELECT id FROM chain ORDER BY depth",
                (parent_id,),
            )
            chain = tuple(str(sid) for (sid,) in rows)
            if len(self._chains) >= _CHAIN_CACHE_SIZE:
                self._chains.clear()
            if chain:  # empty: removed meanwhile; not worth remembering
                self._chains[parent_id] = chain
        return list(chain)

    def _info(self, db: sqlite3.Connection, row: _Row) -> Info:
        _, key, kind, parent_id, labels, created, updated = row
        parent = None
        if parent_id is not None:
            (parent,) = db.execute(
                "SELECT key FROM snapshots WHERE id = ?", (parent_id,)
            ).fetchone()
        return Info(key, Kind(kind), parent, json.loads(labels), created, updated)

    # -- the contract --------------------------------------------------------

    def prepare(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Make active snapshot ``key`` on committed ``parent``; return its writable mounts."""
        return self._create(key, parent, Kind.ACTIVE, labels)

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Make read-only view ``key`` of committed ``parent``; return its mounts."""
        return self._create(key, parent, Kind.VIEW, labels)

    def _create(
        self, key: str, parent: str | None, kind: Kind, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        _validate_key(key)
        now = _now()
        with self._meta.transaction() as db:
            parent_id: int | None = None
            parents: list[str] = []
            if parent is not None:
                found = db.execute(
                    "SELECT id, kind FROM snapshots WHERE snapshotter = ? AND key = ?",
                    (self.name, parent),
                ).fetchone()
                if found is None:
                    raise NotFound(
                        f"snapshot {parent!r} does not exist in snapshotter {self.name!r}"
                    )
                if found[1] != Kind.COMMITTED.value:
                    raise InvalidArgument(
                        f"parent {parent!r} of snapshot {key!r} is {found[1]}, not committed: "
                        "commit it first"
                    )
                parent_id = found[0]
                # per container start: the chain comes from the cache after the first
                parents = self._chain(db, parent_id)
            try:
                cursor = db.execute(
                    "INSERT INTO snapshots (snapshotter, key, kind, parent, labels, created,"
                    " updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.name,
                        key,
                        kind.value,
                        parent_id,
                        json.dumps(dict(labels)) if labels else "{}",
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"snapshot {key!r} already exists in snapshotter {self.name!r}: "
                    "pick another key or remove it"
                ) from None
            sid = str(cursor.lastrowid)
            # The driver works inside the transaction: a failure rolls back the row.
            try:
                self.driver.create(sid, parents, kind)
                return self.driver.mounts(sid, parents, kind)
            except BaseException:
                self.driver.remove(sid)
                raise

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of active or view snapshot ``key`` (again)."""
        db = self._meta.connection()
        row = self._row(db, key)
        if row[2] == Kind.COMMITTED.value:
            raise InvalidArgument(
                f"snapshot {key!r} is committed and cannot be mounted: make a view of it"
            )
        return self.driver.mounts(str(row[0]), self._chain(db, row[3]), Kind(row[2]))

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Freeze active snapshot ``key`` as committed ``name`` (``key`` is gone after)."""
        _validate_key(name, "snapshot name")
        with self._meta.transaction() as db:
            row = self._row(db, key)
            if row[2] != Kind.ACTIVE.value:
                raise InvalidArgument(f"snapshot {key!r} is {row[2]}: only active ones commit")
            merged = {**json.loads(row[4]), **(labels or {})}
            try:
                db.execute(
                    "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, updated = ?"
                    " WHERE id = ?",
                    (name, json.dumps(merged), _now(), row[0]),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"cannot commit {key!r} as {name!r}: a snapshot named {name!r} exists"
                ) from None
            self.driver.commit(str(row[0]), self._chain(db, row[3]))

    def remove(self, key: str) -> None:
        """Remove snapshot ``key`` and its data; refused while it has children."""
        with self._meta.transaction() as db:
            row = self._row(db, key)
            children = [
                k
                for (k,) in db.execute(
                    "SELECT key FROM snapshots WHERE parent = ? ORDER BY key LIMIT 3", (row[0],)
                )
            ]
            if children:
                raise InUse(
                    f"snapshot {key!r} is the parent of {', '.join(map(repr, children))}: "
                    "remove those first"
                )
            db.execute("DELETE FROM snapshots WHERE id = ?", (row[0],))
            # inside the transaction: if the data cannot go (still mounted, say), the
            # row stays and the remove can be retried; a crash leaves data cleanup() finds
            self.driver.remove(str(row[0]))

    def stat(self, key: str) -> Info:
        db = self._meta.connection()
        return self._info(db, self._row(db, key))

    def exists(self, key: str) -> bool:
        db = self._meta.connection()
        row = db.execute(
            "SELECT 1 FROM snapshots WHERE snapshotter = ? AND key = ?", (self.name, key)
        ).fetchone()
        return row is not None

    def update_labels(self, key: str, labels: Mapping[str, str]) -> Info:
        """Replace the labels of ``key``."""
        with self._meta.transaction() as db:
            row = self._row(db, key)
            db.execute(
                "UPDATE snapshots SET labels = ?, updated = ? WHERE id = ?",
                (json.dumps(dict(labels)), _now(), row[0]),
            )
            return self._info(db, self._row(db, key))

    def usage(self, key: str) -> Usage:
        """Disk use of ``key``'s own data (as containerd: not counting parents)."""
        db = self._meta.connection()
        row = self._row(db, key)
        return self.driver.usage(str(row[0]), self._chain(db, row[3]))

    def walk(self, predicate: Callable[[Info], bool] | None = None) -> list[Info]:
        """Every snapshot of this snapshotter (those matching ``predicate``), by key."""
        db = self._meta.connection()
        rows = db.execute(
            "SELECT id, key, kind, parent, labels, created, updated FROM snapshots"
            " WHERE snapshotter = ? ORDER BY key",
            (self.name,),
        ).fetchall()
        infos = [self._info(db, row) for row in rows]
        return [i for i in infos if predicate is None or predicate(i)]

    def cleanup(self) -> list[str]:
        """Delete driver data no snapshot row refers to (left by a crash); return the ids."""
        db = self._meta.connection()
        known = {
            str(sid)
            for (sid,) in db.execute("SELECT id FROM snapshots WHERE snapshotter = ?", (self.name,))
        }
        orphans = [sid for sid in self.driver.ids() if sid not in known]
        for sid in orphans:
            self.driver.remove(sid)
        return orphans

    # -- helpers for images --------------------------------------------------

    def apply_target(self, key: str) -> ApplyTarget | None:
        """Where a layer diff for active ``key`` can be written directly (driver's choice)."""
        db = self._meta.connection()
        row = self._row(db, key)
        if row[2] != Kind.ACTIVE.value:
            raise InvalidArgument(f"snapshot {key!r} is {row[2]}: layers apply to active ones")
        return self.driver.apply_dir(str(row[0]), self._chain(db, row[3]))

    def close(self) -> None:
        self.driver.close()


# -- the registry the runtime exposes ---------------------------------------


class SnapshotterRegistry:
    """Snapshot drivers collected from ``cargohold_snapshotters``, built on first use.

    Data lives under ``<state>/snapshots/<name>/``; metadata in
    ``<state>/snapshots.db``.
    """

    def __init__(self, hook: Any, state_dir: Path) -> None:
        self._hook = hook
        self.state_dir = state_dir
        self.root = state_dir / "snapshots"
        self._classes: dict[str, type[SnapshotDriver]] | None = None
        self._instances: dict[str, Snapshotter] = {}
        self._meta: SnapshotMetadata | None = None
        self._lock = threading.Lock()

    def classes(self) -> dict[str, type[SnapshotDriver]]:
        if self._classes is None:
            provided = self._hook.cargohold_snapshotters()
            self._classes = collect_classes(provided, SnapshotDriver, "snapshotter")
        return self._classes

    def names(self) -> list[str]:
        return sorted(self.classes())

    def metadata(self) -> SnapshotMetadata:
        if self._meta is None:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._meta = SnapshotMetadata(self.state_dir / "snapshots.db")
        return self._meta

    def get(self, name: str) -> Snapshotter:
        """The snapshotter named ``name``; `NotFound` or `NotSupported` says why not."""
        with self._lock:
            snap = self._instances.get(name)
            if snap is None:
                cls = self.classes().get(name)
                if cls is None:
                    raise NotFound(
                        f"no snapshotter named {name!r}; installed: {', '.join(self.names())}"
                    )
                root = self.root / name
                reason = cls.unsupported_reason(root)
                if reason:
                    raise NotSupported(f"snapshotter {name!r} cannot run here: {reason}")
                root.mkdir(mode=0o700, parents=True, exist_ok=True)
                snap = Snapshotter(cls(SnapshotContext(root)), self.metadata())
                self._instances[name] = snap
            return snap

    def default_name(self) -> str:
        return default_snapshotter(self.state_dir, self.classes())

    def default(self) -> Snapshotter:
        """The snapshotter ``$CARGOHOLD_SNAPSHOTTER`` names, else the best for this host."""
        return self.get(self.default_name())

    def close(self) -> None:
        with self._lock:
            for snap in self._instances.values():
                snap.close()
            self._instances.clear()
            if self._meta is not None:
                self._meta.close()
                self._meta = None


#: Tried in this order when probing, as Docker does: a filesystem's own
#: snapshots first, then overlay, then the copy that works anywhere.
PREFERENCE = ("btrfs", "overlay", "copy")


def default_snapshotter(
    state_dir: Path, classes: Mapping[str, type[SnapshotDriver]] | None = None
) -> str:
    """The snapshotter to use for ``state_dir`` on this host.

    ``$CARGOHOLD_SNAPSHOTTER`` wins; otherwise the first of `PREFERENCE`
    whose driver can run (``unsupported_reason`` is None), then any other.
    """
    if chosen := os.environ.get(SNAPSHOTTER_ENV):
        return chosen
    if classes is None:
        from cargohold.core.plugin.manager import build_plugin_manager

        hook = build_plugin_manager().hook
        classes = {cls.name: cls for provided in hook.cargohold_snapshotters() for cls in provided}
    order = [n for n in PREFERENCE if n in classes] + sorted(set(classes) - set(PREFERENCE))
    reasons: list[str] = []
    for name in order:
        reason = classes[name].unsupported_reason(state_dir / "snapshots" / name)
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise NotSupported("no snapshotter can run here: " + "; ".join(reasons))


def new_key(prefix: str = "tmp") -> str:
    """A unique key for a short-lived snapshot (``tmp-<hex>``)."""
    return f"{prefix}-{uuid.uuid4().hex}"
