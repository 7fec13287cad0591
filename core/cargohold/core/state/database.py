"""One SQLite file as the core's stores use it: WAL, a connection per thread,
every change one ``BEGIN IMMEDIATE`` transaction.

WAL lets readers run beside the one writer; ``BEGIN IMMEDIATE`` takes the write
lock up front, so two processes never both read-then-write and deadlock; the
30 s busy timeout lets them queue instead of failing. A crash leaves either the
old or the new state of a transaction, never half of it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

#: seconds a statement waits for another process's lock before failing
BUSY_TIMEOUT = 30.0


class Database:
    """``path`` with ``schema`` (``;``-separated ``CREATE ... IF NOT EXISTS``) applied.

    ``version`` is stored as ``PRAGMA user_version``; a file written with a
    higher one is refused rather than misread (None: the file is unversioned).
    ``synchronous="NORMAL"`` trades the last commit on power loss for speed;
    WAL never corrupts either way.
    """

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        version: int | None = None,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._local = threading.local()
        # A file already at this version has its schema: every command opens the
        # stores, and a write transaction to re-apply it would cost each a lock.
        if version is not None and self._version() == version:
            return
        self._use_wal()
        with self.transaction() as db:
            if version is not None:
                found = self._version()
                if found > version:
                    raise RuntimeError(
                        f"database {path} was written by a newer cargohold (schema {found}, "
                        f"this one reads up to {version}); upgrade cargohold to use it"
                    )
            # executescript() would commit early; run the statements one by one
            for statement in filter(str.strip, schema.split(";")):
                db.execute(statement)
            if version is not None:
                db.execute(f"PRAGMA user_version = {version}")

    def _use_wal(self) -> None:
        """Put the file in WAL mode, which it keeps: done here once, not per connection.

        The switch needs the database to itself, and SQLite does not wait for
        that as it waits for a lock: two processes creating one store at once
        would see "database is locked". So it is retried for the busy timeout.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self.connection().execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _version(self) -> int:
        (found,) = self.connection().execute("PRAGMA user_version").fetchone()
        return int(found)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: use it for reads)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on exit, rolled back on any exception."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (the next use opens a new one)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
