"""The SQLite plumbing every store shares: schema versions, atomic changes, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from cargohold.core.state.database import Database

SCHEMA = "CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"


def _bump(path: Path, times: int) -> None:
    """Read-modify-write ``times`` times: lost updates show if transactions overlap."""
    db = Database(path, SCHEMA, version=1)
    for _ in range(times):
        with db.transaction() as conn:
            (n,) = conn.execute("SELECT n FROM counter WHERE id = 1").fetchone()
            conn.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
    db.close()


def test_failed_change_leaves_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db", SCHEMA)
    with pytest.raises(ValueError), db.transaction() as conn:
        conn.execute("INSERT INTO counter (id, n) VALUES (1, 0)")
        raise ValueError("interrupted")
    assert db.connection().execute("SELECT COUNT(*) FROM counter").fetchone() == (0,)


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Database(path, SCHEMA, version=1).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 7")
    raw.close()
    with pytest.raises(RuntimeError, match=r"newer cargohold \(schema 7.*upgrade cargohold"):
        Database(path, SCHEMA + "; CREATE TABLE IF NOT EXISTS extra (x)", version=1)
    raw = sqlite3.connect(path)
    tables = {t for (t,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert raw.execute("PRAGMA user_version").fetchone() == (7,)
    raw.close()
    assert tables == {"counter"}


def test_settings_apply_to_every_connection(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db", SCHEMA, synchronous="NORMAL")
    conn = db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_threads_and_processes_never_lose_a_change(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = Database(path, SCHEMA, version=1)
    with db.transaction() as conn:
        conn.execute("INSERT INTO counter (id, n) VALUES (1, 0)")
    seen: list[sqlite3.Connection] = []

    def look() -> None:
        seen.append(db.connection())
        db.close()  # this thread's connection only

    threads = [threading.Thread(target=_bump, args=(path, 50)) for _ in range(2)]
    threads.append(threading.Thread(target=look))
    procs = [multiprocessing.get_context("spawn").Process(target=_bump, args=(path, 50))]
    for worker in [*threads, *procs]:
        worker.start()
    for worker in [*threads, *procs]:
        worker.join(timeout=60)
    assert procs[0].exitcode == 0
    assert seen and seen[0] is not db.connection()  # one connection per thread
    assert db.connection().execute("SELECT n FROM counter").fetchone() == (150,)
    db.close()


def test_a_new_store_opened_by_many_at_once_opens_for_all(tmp_path: Path) -> None:
    # as processes starting together on a fresh state directory: the switch to WAL
    # needs the file to itself, and SQLite answers "locked" without waiting for it
    for attempt in range(20):
        path = tmp_path / f"s{attempt}.db"
        errors: list[BaseException] = []

        def open_it(path: Path = path, errors: list[BaseException] = errors) -> None:
            try:
                db = Database(path, "CREATE TABLE IF NOT EXISTS t (x INTEGER)", version=1)
                db.close()
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
