"""The snapshots table in ``snapshots.db``: every snapshotter's keys, kinds and parents."""

from __future__ import annotations

from pathlib import Path

from cargohold.core.state.database import Database

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
