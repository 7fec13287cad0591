"""The write-back journal: what is staged for upload, what is done, how far uploads got.

Layout, in the volume's ``journal/`` directory:

``ops.json``
    The staged batch: one `Op` per file to upload, directory to create, object
    to delete. Written atomically once, when the batch is staged (at unmount or a
    ``sync_interval`` tick); its presence means "write-back pending", which is
    what a restarted plugin looks for.
``done.log``
    One op number per line, appended as each op completes. Its fsync is batched:
    losing the tail in a crash only repeats those ops, which the engine makes
    harmless (an upload it already made is recognised by its content hash).
``uploads/<n>.json``
    The `Checkpoint` of op ``n``'s chunked upload (S3 upload id, GCS session,
    Azure ranges), fsynced after every chunk, so a SIGKILL mid-multipart resumes.

The bytes themselves are the cache files: nothing touches them while a batch is
pending (a mount first waits for the batch), so the journal never copies data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cargohold.drivers.cloud.durable import fsync_dir, read_json, write_json

OpKind = Literal["put", "mkdir", "delete", "rmdir"]

# how often completed-op records are forced to disk
_DONE_SYNC_SECONDS = 0.5


@dataclass(frozen=True)
class Op:
    """One step of a write-back."""

    n: int
    kind: OpKind
    path: str
    #: the version the remote must still be at (from the manifest), if any
    expect: str | None = None
    #: the remote must not exist yet (a new file or directory)
    absent: bool = False
    size: int = 0


class FileCheckpoint:
    """A `backend.Checkpoint` kept in one small file, fsynced on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        value = read_json(self.path)
        return value if isinstance(value, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(exist_ok=True)
        write_json(self.path, state)


class Journal:
    """One volume's journal directory (see the module docstring). Thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._done_file: int | None = None
        self._last_sync = 0.0
        self._unsynced = False

    @property
    def _ops_path(self) -> Path:
        return self.directory / "ops.json"

    @property
    def _done_path(self) -> Path:
        return self.directory / "done.log"

    def is_pending(self) -> bool:
        return self._ops_path.exists()

    def stage(self, ops: list[Op]) -> None:
        """Record a new batch durably; the previous one must be finished."""
        if self.is_pending():
            raise RuntimeError("a write-back batch is already pending")
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._done_path.unlink()
        shutil.rmtree(self.directory / "uploads", ignore_errors=True)
        write_json(
            self._ops_path, {"format": 1, "staged": time.time(), "ops": [asdict(op) for op in ops]}
        )

    def ops(self) -> list[Op]:
        raw = read_json(self._ops_path, {"ops": []})
        return [Op(**item) for item in raw["ops"]]

    def done(self) -> set[int]:
        try:
            text = self._done_path.read_text()
        except FileNotFoundError:
            return set()
        # a torn last line (crash mid-append) is simply not done
        return {int(line) for line in text.splitlines() if line.strip().isdigit()}

    def remaining(self) -> list[Op]:
        done = self.done()
        return [op for op in self.ops() if op.n not in done]

    def checkpoint(self, op: Op) -> FileCheckpoint:
        return FileCheckpoint(self.directory / "uploads" / f"{op.n}.json")

    def mark_done(self, op: Op) -> None:
        with self._lock:
            if self._done_file is None:
                self._done_file = os.open(
                    self._done_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
                )
            os.write(self._done_file, f"{op.n}\n".encode())
            self._unsynced = True
            if time.monotonic() - self._last_sync > _DONE_SYNC_SECONDS:
                self._sync_locked()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "uploads" / f"{op.n}.json").unlink()

    def sync(self) -> None:
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        if self._done_file is not None and self._unsynced:
            os.fsync(self._done_file)
        self._unsynced = False
        self._last_sync = time.monotonic()

    def finish(self) -> None:
        """The batch is complete (and the manifest saved): forget it."""
        with self._lock:
            if self._done_file is not None:
                os.close(self._done_file)
                self._done_file = None
            self._unsynced = False
        with contextlib.suppress(FileNotFoundError):
            self._ops_path.unlink()
        fsync_dir(self.directory)
        with contextlib.suppress(FileNotFoundError):
            self._done_path.unlink()
        shutil.rmtree(self.directory / "uploads", ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._sync_locked()
            if self._done_file is not None:
                os.close(self._done_file)
                self._done_file = None
