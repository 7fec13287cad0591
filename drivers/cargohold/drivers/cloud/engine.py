"""The sync engine: one volume's cache directory kept in step with its remote root.

Layout of a volume's home (``<driver root>/<volume>/``)::

    data/            the cache: what containers see
    tmp/             downloads in progress (renamed into data/ when whole)
    journal/         the staged write-back (see `journal`)
    manifest.json    the synced state (see `manifest`)
    conflicts.json   the conflicts found so far (see `conflicts`)
    status.json      last sync time and last error, for Status
    flush.lock       held by whoever fetches or writes back (any thread, any process)

The caller holds the flush lock (`SyncEngine.locked`) around `fetch`, `stage`
and `flush`. Fetch runs at mount, after any pending write-back; staging runs at
unmount and answers at once; flush runs in the background, is repeatable and
resumes after a crash. Every write carries a precondition from the manifest, so
a concurrent remote change is a conflict, never an overwrite.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.core.kernel.files import syncfs
from cargohold.drivers.cloud import transfer
from cargohold.drivers.cloud.backend import (
    ABSENT,
    Backend,
    BackendError,
    Expect,
    PreconditionFailed,
    RemoteEntry,
    RemoteNotFound,
)
from cargohold.drivers.cloud.conflicts import ConflictLog, ConflictRecord, conflict_name, host_name
from cargohold.drivers.cloud.durable import read_json, write_json
from cargohold.drivers.cloud.journal import FileCheckpoint, Journal, Op
from cargohold.drivers.cloud.manifest import Entry, Manifest, Stat, parents, scan
from cargohold.drivers.cloud.transfer import CacheFull, retrying

log = logging.getLogger(__name__)

# how often a long flush saves the manifest, so a crash repeats little
_SAVE_SECONDS = 2.0


class LockTimeout(Exception):
    """Another thread or process is fetching or writing back this volume."""


class TooLarge(Exception):
    """The remote root holds more than the cache may (``cache_limit``)."""

    def __init__(self, total: int, files: int) -> None:
        super().__init__(total, files)
        self.total, self.files = total, files


class NoRoom(Exception):
    """The cache's filesystem has too little free space for the fetch."""

    def __init__(self, needed: int, free: int) -> None:
        super().__init__(needed, free)
        self.needed, self.free = needed, free


@dataclass(frozen=True)
class Ownership:
    """The uid/gid/mode mapping applied to fetched files (None: leave as created)."""

    uid: int | None = None
    gid: int | None = None
    #: directory mode; files get it without the execute bits
    mode: int | None = None


@dataclass
class FlushReport:
    ops: int = 0
    bytes: int = 0
    conflicts: list[ConflictRecord] = field(default_factory=list)


def safe_path(path: str) -> bool:
    """A remote name we may create under the cache (no ``..``, no absolute paths)."""
    parts = path.split("/")
    return bool(path) and all(p not in ("", ".", "..") for p in parts) and "\0" not in path


class SyncEngine:
    """One volume's cache and its remote (see the module docstring). Thread-safe."""

    def __init__(
        self,
        volume: str,
        home: Path,
        backend: Backend,
        *,
        concurrency: int = 8,
        ownership: Ownership = Ownership(),
        on_conflict: Callable[[ConflictRecord], None] | None = None,
    ) -> None:
        self.volume = volume
        self.home = home
        self.backend = backend
        self.concurrency = max(1, concurrency)
        self.ownership = ownership
        self.on_conflict = on_conflict
        self.journal = Journal(home / "journal")
        self.conflicts = ConflictLog(home / "conflicts.json")
        self._manifest_lock = threading.Lock()

    @property
    def data(self) -> Path:
        return self.home / "data"

    # -- the flush lock ----------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the volume's flush lock; `LockTimeout` after ``timeout`` seconds (None: wait)."""
        fd = os.open(self.home / "flush.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LockTimeout() from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    # -- status ------------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """Staged but not yet written back: (files and directories, bytes)."""
        if not self.journal.is_pending():
            return 0, 0
        remaining = self.journal.remaining()
        return len(remaining), sum(op.size for op in remaining if op.kind == "put")

    def note(self, **fields: Any) -> None:
        """Merge ``fields`` into status.json (last sync, last error)."""
        status = read_json(self.home / "status.json", {})
        status.update(fields)
        write_json(self.home / "status.json", status, durable=False)  # a report only

    def status(self) -> dict[str, Any]:
        files, size = self.pending()
        saved = read_json(self.home / "status.json", {})
        return {
            "remote": self.backend.describe(),
            "pending_files": files,
            "pending_bytes": size,
            "conflicts": [
                {"path": c.path, "copy": c.copy, "at": _iso(c.at), "reason": c.reason}
                for c in self.conflicts.all()
            ],
            **saved,
        }

    # -- fetch (mount) -------------------------------------------------------------

    def fetch(self, cache_limit: int | None = None) -> int:
        """Bring remote changes into the cache; return the bytes fetched.

        Only files that are clean locally are replaced or removed (a mount first
        writes back local changes, so normally every file is). Raise `TooLarge`
        or `NoRoom` before fetching anything.
        """
        self.data.mkdir(parents=True, exist_ok=True)
        tmp = self.home / "tmp"
        tmp.mkdir(exist_ok=True)
        for leftover in tmp.iterdir():  # a download a crash interrupted: never complete
            leftover.unlink()
        entries = retrying("listing", lambda: list(self.backend.list()))
        remote_files = {e.path: e for e in entries if not e.is_dir and safe_path(e.path)}
        remote_dirs = {e.path: e for e in entries if e.is_dir and safe_path(e.path)}
        total = sum(e.size for e in remote_files.values())
        if cache_limit is not None and total > cache_limit:
            raise TooLarge(total, len(remote_files))
        manifest = Manifest(self.home / "manifest.json")
        tree = scan(self.data)
        wanted: list[RemoteEntry] = []
        for path, remote in remote_files.items():
            entry, local = manifest.entries.get(path), tree.files.get(path)
            if local is not None and (entry is None or local != entry.stat):
                continue  # a local change not yet written back wins here; flush decides
            if entry is not None and entry.version == remote.version and local is not None:
                continue
            wanted.append(remote)
        needed = sum(e.size for e in wanted) - sum(
            tree.files[e.path].size for e in wanted if e.path in tree.files
        )
        vfs = os.statvfs(self.home)
        free = vfs.f_bavail * vfs.f_frsize
        if needed > free:
            raise NoRoom(needed, free)
        fetched = self._download_all(wanted, manifest)
        self._apply_remote_dirs(remote_dirs, manifest, tree.dirs)
        self._apply_remote_deletes(remote_files, remote_dirs, manifest, tree.files)
        self._own(self.data, is_dir=True)
        if fetched or wanted:
            syncfs(self.data)  # the files are on disk before the manifest says so
        manifest.save()
        self.note(last_fetch=_iso(time.time()))
        return fetched

    def _download_all(self, wanted: list[RemoteEntry], manifest: Manifest) -> int:
        done = 0
        lock = threading.Lock()

        def count(n: int) -> None:
            nonlocal done
            with lock:
                done += n

        with (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="fetch") as files,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="range") as ranges,
        ):
            futures = [files.submit(self._download_one, e, manifest, ranges, count) for e in wanted]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return done

    def _download_one(
        self,
        remote: RemoteEntry,
        manifest: Manifest,
        ranges: ThreadPoolExecutor,
        progress: Callable[[int], None],
    ) -> None:
        target = self.data / remote.path
        self._make_parents(remote.path)
        partial = self.home / "tmp" / secrets.token_hex(8)
        try:
            transfer.download(
                self.backend,
                remote,
                partial,
                pool=ranges,
                progress=progress,
                parallel=self.concurrency,
            )
        except PreconditionFailed:
            return  # it changed while we fetched: the next mount fetches the new version
        except RemoteNotFound:
            return  # deleted meanwhile
        self._own(partial, is_dir=False)
        if remote.mtime:
            os.utime(partial, (remote.mtime, remote.mtime))
        if target.is_dir() and not target.is_symlink():
            partial.unlink()
            log.warning("volume %s: %s is a directory here, not fetched", self.volume, remote.path)
            return
        os.replace(partial, target)
        with self._manifest_lock:
            manifest.entries[remote.path] = Entry(
                False, remote.version, remote.size, Stat.of(target.lstat())
            )

    def _apply_remote_dirs(
        self, remote_dirs: dict[str, RemoteEntry], manifest: Manifest, local_dirs: set[str]
    ) -> None:
        for path, remote in sorted(remote_dirs.items()):
            target = self.data / path
            if path not in local_dirs:
                self._make_parents(path)
                with contextlib.suppress(FileExistsError):
                    target.mkdir()
                    self._own(target, is_dir=True)
            if target.is_dir():
                manifest.entries[path] = Entry(True, remote.version)

    def _apply_remote_deletes(
        self,
        remote_files: dict[str, RemoteEntry],
        remote_dirs: dict[str, RemoteEntry],
        manifest: Manifest,
        local_files: dict[str, Stat],
    ) -> None:
        for path, entry in sorted(manifest.entries.items(), reverse=True):
            if entry.is_dir and path not in remote_dirs:
                del manifest.entries[path]
                with contextlib.suppress(OSError):  # only if empty: files may live in it
                    (self.data / path).rmdir()
            elif not entry.is_dir and path not in remote_files:
                del manifest.entries[path]
                if local_files.get(path) == entry.stat:  # clean: the remote delete applies
                    with contextlib.suppress(FileNotFoundError):
                        (self.data / path).unlink()

    def _make_parents(self, path: str) -> None:
        for parent in reversed(list(parents(path))):
            directory = self.data / parent
            if not directory.is_dir():
                with contextlib.suppress(FileExistsError):
                    directory.mkdir()
                    self._own(directory, is_dir=True)

    def _own(self, path: Path, *, is_dir: bool) -> None:
        owner = self.ownership
        if owner.uid is not None or owner.gid is not None:
            os.lchown(
                path, -1 if owner.uid is None else owner.uid, -1 if owner.gid is None else owner.gid
            )
        if owner.mode is not None:
            os.chmod(path, owner.mode if is_dir else owner.mode & 0o666)

    # -- stage (unmount) -------------------------------------------------------------

    def stage(self) -> int:
        """Journal the local changes as one batch; return how many ops are pending.

        Quick: a stat of every file, no hashing, no network. A batch already
        pending is left as it is (flush stages again once it is done).
        """
        if self.journal.is_pending():
            return len(self.journal.remaining())
        manifest = Manifest(self.home / "manifest.json")
        tree = scan(self.data)
        ops: list[Op] = []

        def add(kind: Any, path: str, expect: str | None = None, size: int = 0) -> None:
            ops.append(Op(len(ops), kind, path, expect, expect is None, size))

        for path, st in sorted(tree.files.items()):
            entry = manifest.entries.get(path)
            if entry is None or entry.is_dir:
                add("put", path, None, st.size)
            elif entry.stat != st:
                add("put", path, entry.version, st.size)
        for path in sorted(tree.empty_dirs):
            if path not in manifest.entries:
                add("mkdir", path)
        for path, entry in sorted(manifest.entries.items()):
            if not entry.is_dir and path not in tree.files:
                add("delete", path, entry.version)
        for path, entry in sorted(manifest.entries.items(), reverse=True):  # deepest first
            if entry.is_dir and path not in tree.dirs:
                add("rmdir", path, entry.version)
        if ops:
            self.journal.stage(ops)
        return len(ops)

    # -- flush (background write-back) -----------------------------------------------

    def flush(self, progress: Callable[[int, int], None] | None = None) -> FlushReport:
        """Write back the pending batch, then any changes made since, until none are left.

        ``progress(ops_done, bytes_done)`` is called as work completes. Raises the
        backend's error (the journal keeps what is left) if a transfer still fails
        after its retries.
        """
        report = FlushReport()
        while True:
            if not self.journal.is_pending() and self.stage() == 0:
                break
            self._flush_batch(report, progress)
        self.note(last_sync=_iso(time.time()), last_error=None)
        return report

    def _flush_batch(
        self, report: FlushReport, progress: Callable[[int, int], None] | None
    ) -> None:
        manifest = Manifest(self.home / "manifest.json")
        remaining = self.journal.remaining()
        saved_at = time.monotonic()
        lock = threading.Lock()

        def run(op: Op) -> None:
            nonlocal saved_at
            moved = self._run_op(op, manifest, report)
            self.journal.mark_done(op)
            with lock:
                report.ops += 1
                report.bytes += moved
                if progress is not None:
                    progress(report.ops, report.bytes)
                if time.monotonic() - saved_at > _SAVE_SECONDS:
                    saved_at = time.monotonic()
                    self.journal.sync()
                    with self._manifest_lock:
                        manifest.save()

        try:
            # new files and directories first, then deletes, then directories deepest first
            for kinds, parallel in (
                (("put", "mkdir"), True),
                (("delete",), True),
                (("rmdir",), False),
            ):
                group = [op for op in remaining if op.kind in kinds]
                if parallel and len(group) > 1:
                    with ThreadPoolExecutor(self.concurrency, thread_name_prefix="flush") as pool:
                        futures = [pool.submit(run, op) for op in group]
                        errors = [f.exception() for f in futures]
                    for error in errors:
                        if error is not None:
                            raise error
                else:
                    for op in group:
                        run(op)
        finally:
            self.journal.sync()
            with self._manifest_lock:
                manifest.save()
        self.journal.finish()

    def _run_op(self, op: Op, manifest: Manifest, report: FlushReport) -> int:
        """Do one op; return the bytes uploaded. Conflicts are resolved, not raised."""
        expect = Expect(version=op.expect, absent=op.absent)
        if op.kind == "mkdir":
            if (self.data / op.path).is_dir():
                version = retrying(op.path, lambda: self.backend.make_dir(op.path, expect=ABSENT))
                with self._manifest_lock:
                    manifest.entries[op.path] = Entry(True, version)
            return 0
        if op.kind in ("delete", "rmdir"):
            try:
                retrying(
                    op.path,
                    lambda: self.backend.delete(op.path, expect=expect, is_dir=op.kind == "rmdir"),
                )
            except PreconditionFailed:
                if op.kind == "delete":
                    self._record(
                        report, op.path, None, "deleted here, changed remotely: kept the remote"
                    )
            with self._manifest_lock:
                manifest.entries.pop(op.path, None)
            return 0
        return self._put(op, expect, manifest, report)

    def _put(self, op: Op, expect: Expect, manifest: Manifest, report: FlushReport) -> int:
        local = self.data / op.path
        try:
            before = Stat.of(local.lstat())
            digest = transfer.sha256_file(local)
        except FileNotFoundError:
            return 0  # deleted since it was staged (a flush while mounted): the next stage sees it

        def upload(path: str, condition: Expect, checkpoint: Any) -> str:
            return retrying(
                f"writing {path}",
                lambda: self.backend.put(
                    path,
                    local,
                    size=before.size,
                    sha256=digest,
                    expect=condition,
                    checkpoint=checkpoint,
                    parallel=self.concurrency,
                ),
            )

        try:
            try:
                version = upload(op.path, expect, self.journal.checkpoint(op))
            except RemoteNotFound:  # deleted remotely while changed here: keep ours as new
                version = upload(op.path, ABSENT, self.journal.checkpoint(op))
        except PreconditionFailed:
            self._conflict(op, local, before, digest, manifest, report, upload)
            return before.size
        with self._manifest_lock:
            manifest.entries[op.path] = Entry(False, version, before.size, before)
        return before.size

    def _conflict(
        self,
        op: Op,
        local: Path,
        before: Stat,
        digest: str,
        manifest: Manifest,
        report: FlushReport,
        upload: Callable[[str, Expect, Any], str],
    ) -> None:
        """Keep both: the remote stays, the local version goes up under a conflict name."""
        remote = retrying(op.path, lambda: self.backend.head(op.path))
        if remote is not None and remote.sha256 == digest:
            # our own upload, finished just before a crash: not a conflict
            with self._manifest_lock:
                manifest.entries[op.path] = Entry(False, remote.version, before.size, before)
            return
        now = time.time()
        copy = conflict_name(op.path, host_name(), now)
        checkpoint = FileCheckpoint(self.journal.directory / "uploads" / f"{op.n}.conflict.json")
        version = upload(copy, ABSENT, checkpoint)
        # the same on this side: the local version under the conflict name, the remote's
        # under the original name
        copy_path = self.data / copy
        os.rename(local, copy_path)
        with self._manifest_lock:
            manifest.entries[copy] = Entry(False, version, before.size, Stat.of(copy_path.lstat()))
            manifest.entries.pop(op.path, None)
        if remote is not None and not remote.is_dir:
            with contextlib.suppress(BackendError, CacheFull):
                self._download_one(remote, manifest, _NO_POOL, lambda _: None)
                syncfs(self.data)
        self._record(report, op.path, copy, "changed here and remotely: both kept")

    def _record(self, report: FlushReport, path: str, copy: str | None, reason: str) -> None:
        record = ConflictRecord(path, copy, time.time(), reason)
        self.conflicts.add(record)
        report.conflicts.append(record)
        log.warning("volume %s: conflict on %s: %s", self.volume, path, reason)
        if self.on_conflict is not None:
            try:
                self.on_conflict(record)
            except Exception:
                log.exception("volume %s: reporting a conflict failed", self.volume)

    def fail(self, err: BaseException) -> None:
        """Remember why the last flush stopped, for Status."""
        self.note(last_error=str(err) or type(err).__name__, last_error_at=_iso(time.time()))

    def close(self) -> None:
        self.journal.close()


class _NoPool(ThreadPoolExecutor):
    """Ranges one after another: a conflict's fetch runs inside a flush worker."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


_NO_POOL = _NoPool(1)


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def is_cache_full(err: BaseException) -> bool:
    return isinstance(err, CacheFull) or (
        isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    )
