"""Container rows in their own SQLite file (WAL), on the shared `Database`."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from cargohold.core.api.errors import Conflict
from cargohold.core.containers.records import Container, ContainerState
from cargohold.core.state.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    state TEXT NOT NULL
);
-- the last exit code of removed containers, for a while: `wait --condition removed`
-- (docker run --rm) may ask after the supervisor already removed the container
CREATE TABLE IF NOT EXISTS removed (
    id TEXT PRIMARY KEY,
    exit_code INTEGER NOT NULL,
    at REAL NOT NULL
)
"""
SCHEMA_VERSION = 1
#: how long a removed container's exit code is kept
REMOVED_KEPT = 600.0


def name_conflict(name: str, holder: Container | None) -> Conflict:
    """Docker's message for a taken name (the engine answers 409)."""
    who = f"container {holder.id}" if holder else "another container"
    return Conflict(
        f'the container name "/{name}" is already in use by {who}: '
        "remove (or rename) that container to reuse the name"
    )


class ContainerStore:
    """Container rows: one per container, the name ``UNIQUE`` (two creates cannot both win).

    A file of its own, so container churn never contends with volume
    transactions.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # state rows are rewritten often; WAL + NORMAL never corrupts, and a
        # power cut at worst loses the last state change, which is re-read from /proc
        self._db = Database(path, _SCHEMA, version=SCHEMA_VERSION, synchronous="NORMAL")

    def close(self) -> None:
        self._db.close()

    def insert(self, container: Container) -> None:
        try:
            with self._db.transaction() as db:
                db.execute(
                    "INSERT INTO containers (id, name, data, state) VALUES (?, ?, ?, ?)",
                    (container.id, container.name, container.to_row(), container.state.to_json()),
                )
        except sqlite3.IntegrityError:
            raise name_conflict(container.name, self.by_name(container.name)) from None

    def update(self, container: Container) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE containers SET data = ?, state = ? WHERE id = ?",
                (container.to_row(), container.state.to_json(), container.id),
            )

    def set_state(self, container_id: str, state: ContainerState) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE containers SET state = ? WHERE id = ?", (state.to_json(), container_id)
            )

    def delete(self, container_id: str, exit_code: int | None = None) -> None:
        now = time.time()
        with self._db.transaction() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (container_id,))
            db.execute("DELETE FROM removed WHERE at < ?", (now - REMOVED_KEPT,))
            if exit_code is not None:
                db.execute(
                    "INSERT OR REPLACE INTO removed (id, exit_code, at) VALUES (?, ?, ?)",
                    (container_id, exit_code, now),
                )

    def removed_exit_code(self, container_id: str) -> int | None:
        """The exit code a container had when it was removed (kept `REMOVED_KEPT` s)."""
        row = (
            self._db.connection()
            .execute("SELECT exit_code FROM removed WHERE id = ?", (container_id,))
            .fetchone()
        )
        return int(row[0]) if row else None

    def get(self, container_id: str) -> Container | None:
        row = (
            self._db.connection()
            .execute("SELECT data, state FROM containers WHERE id = ?", (container_id,))
            .fetchone()
        )
        return Container.from_row(*row) if row else None

    def by_name(self, name: str) -> Container | None:
        row = (
            self._db.connection()
            .execute("SELECT data, state FROM containers WHERE name = ?", (name,))
            .fetchone()
        )
        return Container.from_row(*row) if row else None

    def ids_with_prefix(self, prefix: str) -> list[str]:
        rows = self._db.connection().execute(
            "SELECT id FROM containers WHERE id >= ? AND id < ? LIMIT 2", (prefix, prefix + "g")
        )
        return [r[0] for r in rows]

    def list(self) -> list[Container]:
        rows = self._db.connection().execute("SELECT data, state FROM containers").fetchall()
        containers = [Container.from_row(*r) for r in rows]
        return sorted(containers, key=lambda c: c.created, reverse=True)
