"""Persistent metadata: volumes and their references, in SQLite (WAL).

The store is the single source of truth for what exists; drivers hold only
bytes. Every change is one transaction, so a crash leaves either the old or
the new state, never a half-written one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.core.state.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    options TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at TEXT NOT NULL,
    mountpoint TEXT
);
CREATE TABLE IF NOT EXISTS refs (
    volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    ref TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (volume, ref)
);
CREATE TABLE IF NOT EXISTS holds (
    volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    PRIMARY KEY (volume, holder)
);
"""
SCHEMA_VERSION = 1
# One statement, so a volume, its refs and its holders come from one snapshot
# (and the engine's frequent Get reads the database once, not three times).
_GET = (
    "SELECT name, driver, options, labels, created_at, mountpoint,"
    " (SELECT json_group_object(ref, count) FROM refs WHERE volume = ?1),"
    " (SELECT json_group_array(holder) FROM holds WHERE volume = ?1)"
    " FROM volumes WHERE name = ?1"
)


@dataclass(frozen=True)
class VolumeRecord:
    """What the core knows of a volume. ``options`` hold secret references, not secrets."""

    name: str
    driver: str
    options: Mapping[str, str]
    labels: Mapping[str, str]
    created_at: str
    mountpoint: str | None = None
    refs: Mapping[str, int] = field(default_factory=dict)
    #: Containers that use the volume, running or not (Docker's references):
    #: they keep it from removal without keeping it mounted.
    holders: tuple[str, ...] = ()

    @property
    def ref_count(self) -> int:
        return sum(self.refs.values())

    @property
    def users(self) -> list[str]:
        """Every mount id and holder using the volume; it cannot go while any does."""
        return sorted(set(self.refs) | set(self.holders))


class Store:
    """Volume metadata in one SQLite file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, _SCHEMA, version=SCHEMA_VERSION)

    def close(self) -> None:
        self._db.close()

    # -- volumes -------------------------------------------------------------

    def get(self, name: str) -> VolumeRecord | None:
        row = self._db.connection().execute(_GET, (name,)).fetchone()
        if row is None:
            return None
        return _record(row[:6], _loads(row[6]), _loads(row[7]))

    def exists(self, name: str) -> bool:
        db = self._db.connection()
        return db.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone() is not None

    def list(self) -> list[VolumeRecord]:
        db = self._db.connection()
        refs: dict[str, dict[str, int]] = {}
        for volume, ref, count in db.execute("SELECT volume, ref, count FROM refs"):
            refs.setdefault(volume, {})[ref] = count
        holders: dict[str, list[str]] = {}
        for volume, holder in db.execute("SELECT volume, holder FROM holds"):
            holders.setdefault(volume, []).append(holder)
        rows = db.execute(
            "SELECT name, driver, options, labels, created_at, mountpoint"
            " FROM volumes ORDER BY name"
        )
        return [_record(row, refs.get(row[0], {}), holders.get(row[0], [])) for row in rows]

    def add(self, record: VolumeRecord) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO volumes (name, driver, options, labels, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    record.name,
                    record.driver,
                    json.dumps(dict(record.options), sort_keys=True),
                    json.dumps(dict(record.labels), sort_keys=True),
                    record.created_at,
                ),
            )

    def delete(self, name: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM volumes WHERE name = ?", (name,))

    # -- references ----------------------------------------------------------

    def add_ref(self, name: str, ref: str, mountpoint: str) -> int:
        """Count one more use of ``name`` by ``ref``; return the volume's total."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO refs (volume, ref, count) VALUES (?, ?, 1)"
                " ON CONFLICT (volume, ref) DO UPDATE SET count = count + 1",
                (name, ref),
            )
            db.execute("UPDATE volumes SET mountpoint = ? WHERE name = ?", (mountpoint, name))
            return _total(db, name)

    def drop_ref(self, name: str, ref: str, *, every: bool = False) -> int:
        """Count one use fewer (with ``every``, all of ``ref``'s); return the volume's total.

        Unknown refs change nothing.
        """
        with self._db.transaction() as db:
            if not every:
                db.execute(
                    "UPDATE refs SET count = count - 1 WHERE volume = ? AND ref = ? AND count > 1",
                    (name, ref),
                )
            if every or db.execute("SELECT changes()").fetchone()[0] == 0:
                db.execute("DELETE FROM refs WHERE volume = ? AND ref = ?", (name, ref))
            total = _total(db, name)
            if total == 0:
                db.execute("UPDATE volumes SET mountpoint = NULL WHERE name = ?", (name,))
            return total

    # -- holds -------------------------------------------------------------

    def add_hold(self, name: str, holder: str) -> None:
        """Record that ``holder`` uses ``name`` (idempotent)."""
        with self._db.transaction() as db:
            db.execute("INSERT OR IGNORE INTO holds (volume, holder) VALUES (?, ?)", (name, holder))

    def drop_hold(self, name: str, holder: str) -> None:
        """Forget that ``holder`` uses ``name``; an unknown holder changes nothing."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM holds WHERE volume = ? AND holder = ?", (name, holder))


def _total(db: sqlite3.Connection, name: str) -> int:
    (total,) = db.execute(
        "SELECT COALESCE(SUM(count), 0) FROM refs WHERE volume = ?", (name,)
    ).fetchone()
    return int(total)


def _record(
    row: tuple[str, str, str, str, str, str | None],
    refs: dict[str, int],
    holders: list[str] | None = None,
) -> VolumeRecord:
    name, driver, options, labels, created_at, mountpoint = row
    return VolumeRecord(
        name=name,
        driver=driver,
        options=_loads(options),
        labels=_loads(labels),
        created_at=created_at,
        mountpoint=mountpoint,
        refs=refs,
        holders=tuple(sorted(holders or ())),
    )


def _loads(text: str) -> Any:
    """JSON from a column; most are empty, and the engine's Get reads four of them."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)
