"""The core's `Snapshotter`: a snapshot driver with the metadata the core keeps.

See `cargohold.core.api.snapshots` for the glossary and the driver contract.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Mapping

from cargohold.core.api.clock import utc_now
from cargohold.core.api.errors import Conflict, InUse, InvalidArgument, NotFound
from cargohold.core.api.logs import get_logger
from cargohold.core.api.snapshots import (
    ApplyTarget,
    Info,
    Kind,
    SnapshotDriver,
    SnapshotMount,
    Usage,
)
from cargohold.core.state.snapshot_store import SnapshotMetadata

log = get_logger(__name__)
_Row = tuple[int, str, str, int | None, str, str, str]

#: Chains kept per `Snapshotter` before the cache starts over (a few KiB each at most).
_CHAIN_CACHE_SIZE = 512


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
    ) -> list[SnapshotMount]:
        """Make active snapshot ``key`` on committed ``parent``; return its writable mounts."""
        return self._create(key, parent, Kind.ACTIVE, labels)

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[SnapshotMount]:
        """Make read-only view ``key`` of committed ``parent``; return its mounts."""
        return self._create(key, parent, Kind.VIEW, labels)

    def _create(
        self, key: str, parent: str | None, kind: Kind, labels: Mapping[str, str] | None
    ) -> list[SnapshotMount]:
        _validate_key(key)
        now = utc_now("microseconds")
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

    def mounts(self, key: str) -> list[SnapshotMount]:
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
                    (name, json.dumps(merged), utc_now("microseconds"), row[0]),
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
                (json.dumps(dict(labels)), utc_now("microseconds"), row[0]),
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


def new_key(prefix: str = "tmp") -> str:
    """A unique key for a short-lived snapshot (``tmp-<hex>``)."""
    return f"{prefix}-{uuid.uuid4().hex}"
