"""`CloudDriver`: the volume-driver side shared by the s3, azurefile and gcs drivers.

A subclass names its backend module and declares its service's options; this
class adds the shared ones and maps the driver contract onto the sync engine:
``create`` checks (or makes) the remote root, ``mount`` writes back anything
pending and fetches, the last ``unmount`` stages the write-back and returns at
once while a background worker uploads. A worker dies with its process; the
journal does not, and a restarted plugin resumes every pending batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from cargohold.core import (
    CargoholdError,
    DriverContext,
    DriverVolume,
    InvalidArgument,
    NotFound,
    Option,
    Unavailable,
    VolumeDriver,
)
from cargohold.drivers.cloud import readonly
from cargohold.drivers.cloud.backend import (
    AuthFailed,
    Backend,
    BackendError,
    ContainerNotFound,
    Transient,
)
from cargohold.drivers.cloud.conflicts import ConflictRecord
from cargohold.drivers.cloud.durable import read_json, write_json
from cargohold.drivers.cloud.engine import (
    FlushReport,
    LockTimeout,
    NoRoom,
    Ownership,
    SyncEngine,
    TooLarge,
    is_cache_full,
)
from cargohold.drivers.cloud.workers import Workers, stored_options

log = logging.getLogger(__name__)

#: how long a mount or remove waits for a write-back in progress (Docker gives a mount 2 min)
WAIT_SECONDS = 50.0

SHARED_OPTIONS: tuple[Option, ...] = (
    Option("readonly", type="bool", default=False, help="mount read-only; never write back"),
    Option(
        "create",
        type="bool",
        default=False,
        help="make the bucket/share and prefix/directory at volume create if missing",
    ),
    Option(
        "delete_remote",
        type="bool",
        default=False,
        help="delete the remote data when the volume is removed (default: keep it)",
    ),
    Option(
        "cache_limit",
        type="size",
        help="refuse to mount a remote root larger than this (e.g. 10g); default: no limit",
    ),
    Option("concurrency", type="int", default=8, help="parallel transfers (and chunks per file)"),
    Option("uid", type="int", help="owner of fetched files and directories"),
    Option("gid", type="int", help="group of fetched files and directories"),
    Option("mode", help="octal mode of fetched directories (files: without x bits), e.g. 0775"),
    Option(
        "sync_interval",
        type="int",
        default=0,
        help="while mounted, write back every this many seconds (0: only at unmount)",
    ),
)


class CloudDriver(VolumeDriver):
    """A volume is a remote root (bucket + prefix, share + directory) and a local cache."""

    scope = "global"
    # the remote data outlives the volume unless delete_remote=true
    removes_data = False
    #: module holding ``open_backend`` (a `backend.BackendFactory`), imported on first use
    backend_module: ClassVar[str]
    #: the service's own options, before the shared ones
    service_options: ClassVar[tuple[Option, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "service_options" in cls.__dict__:
            cls.options = cls.service_options + SHARED_OPTIONS

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.workers = Workers(self)
        self._backends: dict[str, tuple[bytes, Backend]] = {}
        self._backends_lock = threading.Lock()
        self._tickers: dict[str, threading.Event] = {}
        self.workers.resume_all()

    # -- the pieces ----------------------------------------------------------------

    def _home(self, name: str) -> Path:
        return self.root / name

    def open_backend(self, name: str, opts: Mapping[str, Any]) -> Backend:
        module = importlib.import_module(self.backend_module)
        factory: Callable[[str, dict[str, Any]], Backend] = module.open_backend
        return factory(name, dict(opts))

    def _backend(self, name: str, opts: Mapping[str, Any]) -> Backend:
        """The volume's backend, kept between calls: an SDK client costs ~0.2 s to build."""
        key = hashlib.sha256(repr(sorted((k, str(v)) for k, v in opts.items())).encode()).digest()
        with self._backends_lock:
            cached = self._backends.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            backend = self.open_backend(name, opts)
            self._backends[name] = (key, backend)
        if cached is not None:
            cached[1].close()
        return backend

    def _drop_backend(self, name: str) -> None:
        with self._backends_lock:
            cached = self._backends.pop(name, None)
        if cached is not None:
            cached[1].close()

    def engine(self, name: str, opts: Mapping[str, Any]) -> SyncEngine:
        mode = opts.get("mode")
        ownership = Ownership(opts.get("uid"), opts.get("gid"), int(mode, 8) if mode else None)
        return SyncEngine(
            name,
            self._home(name),
            self._backend(name, opts),
            concurrency=int(opts.get("concurrency") or 8),
            ownership=ownership,
            on_conflict=lambda record: self._emit_conflict(name, record),
        )

    def _existing(self, name: str) -> Path:
        home = self._home(name)
        if not (home / "volume.json").exists():
            raise NotFound(f"no such volume: {name}")
        return home

    # -- create / remove -------------------------------------------------------------

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        home = self._home(name)
        if (home / "volume.json").exists():
            return
        mode = opts.get("mode")
        if mode:
            try:
                int(mode, 8)
            except ValueError:
                raise InvalidArgument(
                    f"volume {name}: mode={mode!r} is not octal (e.g. 0775)"
                ) from None
        concurrency = opts.get("concurrency")
        if concurrency is not None and int(concurrency) < 1:
            raise InvalidArgument(f"volume {name}: concurrency must be at least 1")
        backend = self._backend(name, opts)  # kept for the mount that usually follows
        try:
            with self._errors(name, backend, "create"):
                if opts.get("create"):
                    backend.make_container()
                else:
                    backend.check()
        except BaseException:
            self._drop_backend(name)
            raise
        (home / "data").mkdir(parents=True, exist_ok=True)
        (home / "journal").mkdir(exist_ok=True)
        # no options here (the core keeps them): only what get() needs without them
        write_json(
            home / "volume.json",
            {"remote": backend.describe(), "readonly": bool(opts.get("readonly"))},
        )

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        home = self._existing(name)
        self._stop_ticker(name)
        self.workers.cancel(name)  # this flush is the last; a waiting worker gives up
        engine = self.engine(name, opts)
        try:
            with self._errors(name, engine.backend, "remove"), self._waiting(name, engine):
                if opts.get("delete_remote"):
                    _delete_all(engine.backend)
                elif not opts.get("readonly"):
                    engine.flush()  # never drop a byte not yet written back
                with contextlib.suppress(OSError):
                    readonly.unbind(home / "ro")
                # still under the flush lock: nobody writes into the home while it goes
                (home / "volume.json").unlink()
                shutil.rmtree(home)
        finally:
            engine.close()
        self._drop_backend(name)

    # -- mount / unmount ----------------------------------------------------------------

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        home = self._existing(name)
        ro = bool(opts.get("readonly"))
        if ro and readonly.is_mounted(home / "ro"):
            return home / "ro"  # mounted before a crash of the service: the same path
        self._stop_ticker(name)
        # this mount writes back what is pending itself: a worker still waiting for the
        # lock must not start flushing once the container is writing
        self.workers.cancel(name)
        engine = self.engine(name, opts)
        try:
            with self._errors(name, engine.backend, "mount"), self._waiting(name, engine):
                if not ro:
                    engine.flush()  # changes left by a crash go up before anything comes down
                engine.fetch(opts.get("cache_limit"))
        finally:
            engine.close()
        if ro:
            try:
                readonly.bind_readonly(home / "data", home / "ro")
            except OSError as err:
                raise Unavailable(
                    f"volume {name}: a read-only mount needs the mount system call ({err}); "
                    "run the plugin as root"
                ) from None
            return home / "ro"
        interval = int(opts.get("sync_interval") or 0)
        if interval > 0:
            self._start_ticker(name, opts, interval)
        return home / "data"

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        home = self._existing(name)
        if opts.get("readonly"):
            readonly.unbind(home / "ro")
            return
        self._stop_ticker(name)
        # stage now (a stat of each file, durable), upload in the background
        self.workers.start(name, opts, stage_first=True)

    # -- on demand -------------------------------------------------------------------------

    def sync(
        self,
        name: str,
        opts: Mapping[str, Any],
        *,
        wait: bool = True,
        progress: Callable[[int, int, int, int], None] | None = None,
    ) -> FlushReport | None:
        """Write back everything pending now; None if another process is at it and not ``wait``.

        With ``wait``, a write-back running elsewhere is waited for (its progress
        reported from the journal), then whatever is left is flushed here.
        ``progress(ops_done, ops_total, bytes_done, bytes_total)``. The report's
        conflicts are those found since the last sync, by this flush or a background one.
        """
        self._existing(name)
        if opts.get("readonly"):
            return FlushReport()
        self._stop_ticker(name)
        engine = self.engine(name, opts)
        try:
            with self._errors(name, engine.backend, "sync"):
                lock = self._lock_watching(engine, wait, progress)
                if lock is None:
                    return None
                with lock:
                    engine.stage()
                    total_ops, total_bytes = engine.pending()

                    def report(ops: int, size: int) -> None:
                        if progress is not None:
                            progress(ops, max(total_ops, ops), size, max(total_bytes, size))

                    report(0, 0)
                    try:
                        result = engine.flush(report)
                    except Exception as err:
                        engine.fail(err)  # for Status; the journal keeps what is left
                        raise
                    result.conflicts = engine.conflicts.unreported()
                    engine.conflicts.mark_reported()
                    return result
        finally:
            engine.close()

    def _lock_watching(
        self,
        engine: SyncEngine,
        wait: bool,
        progress: Callable[[int, int, int, int], None] | None,
    ) -> contextlib.AbstractContextManager[None] | None:
        """The flush lock, held; while another process holds it, report its progress."""
        while True:
            lock = engine.locked(timeout=0)
            try:
                lock.__enter__()
            except LockTimeout:
                if not wait:
                    return None
                if progress is not None and engine.journal.is_pending():
                    ops = engine.journal.ops()
                    done = engine.journal.done()
                    total = sum(op.size for op in ops if op.kind == "put")
                    moved = sum(op.size for op in ops if op.n in done and op.kind == "put")
                    progress(len(done), len(ops), moved, total)
                time.sleep(0.2)
                continue
            return _Held(lock)

    # -- report ---------------------------------------------------------------------------

    def get(self, name: str) -> DriverVolume:
        home = self._existing(name)
        return DriverVolume(name, self._mountpoint(home), self._status(name, home))

    def list(self) -> list[DriverVolume]:
        return [
            DriverVolume(home.name, self._mountpoint(home))
            for home in sorted(self.root.iterdir())
            if (home / "volume.json").exists()
        ]

    def _mountpoint(self, home: Path) -> Path:
        info = read_json(home / "volume.json", {})
        return home / ("ro" if info.get("readonly") else "data")

    def _status(self, name: str, home: Path) -> dict[str, Any]:
        info = read_json(home / "volume.json", {})
        files = bytes_ = 0
        journal = home / "journal"
        if (journal / "ops.json").exists():
            from cargohold.drivers.cloud.journal import Journal

            remaining = Journal(journal).remaining()
            files = len(remaining)
            bytes_ = sum(op.size for op in remaining if op.kind == "put")
        saved = read_json(home / "status.json", {})
        conflicts = read_json(home / "conflicts.json", {"conflicts": []})["conflicts"]
        return {
            "remote": info.get("remote", ""),
            "state": "syncing" if self.workers.running(name) else ("pending" if files else "idle"),
            "pending_files": files,
            "pending_bytes": bytes_,
            "conflicts": [
                {
                    "path": c["path"],
                    "copy": c["copy"],
                    "reason": c["reason"],
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c["at"])),
                }
                for c in conflicts
            ],
            **{k: v for k, v in saved.items() if v is not None},
        }

    def close(self) -> None:
        for name in list(self._tickers):
            self._stop_ticker(name)
        self.workers.close()
        for name in list(self._backends):
            self._drop_backend(name)

    # -- helpers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _waiting(self, name: str, engine: SyncEngine) -> Any:
        """The flush lock, waiting a bounded time for a write-back in progress.

        A background worker holds the lock only while it transfers, not while it
        backs off after a failure, so this does not wait out a server outage.
        """
        try:
            with engine.locked(WAIT_SECONDS):
                yield
        except LockTimeout:
            files, size = engine.pending()
            raise Unavailable(
                f"volume {name}: another process is still writing back {files} files "
                f"({size} bytes) to {engine.backend.describe()}; wait for it "
                f"(cargohold volume sync {name} --wait) and try again"
            ) from None

    @contextlib.contextmanager
    def _errors(self, name: str, backend: Backend, action: str) -> Any:
        """Backend and cache failures as core errors that name the volume and the fix."""
        where = backend.describe()
        try:
            yield
        except CargoholdError:
            raise
        except ContainerNotFound as err:
            raise NotFound(
                f"volume {name}: {where} does not exist ({err}); create it, "
                "or create the volume with -o create=true"
            ) from None
        except AuthFailed as err:
            raise InvalidArgument(
                f"volume {name}: {where} refused the credentials ({err}); check the "
                f"credential options' references (or the SDK's credential chain)"
            ) from None
        except Transient as err:
            raise Unavailable(
                f"volume {name}: {where} is not answering ({err}); nothing was lost, "
                f"try the {action} again when it is reachable"
            ) from None
        except TooLarge as err:
            raise InvalidArgument(
                f"volume {name}: {where} holds {_human(err.total)} in {err.files} files, more "
                "than its cache_limit allows; recreate the volume with a larger cache_limit "
                "or a narrower prefix/directory"
            ) from None
        except NoRoom as err:
            raise Unavailable(
                f"volume {name}: the cache under {self.root} has {_human(err.free)} free but "
                f"the fetch needs {_human(err.needed)}; free space there or move the state "
                "directory"
            ) from None
        except BackendError as err:
            raise CargoholdError(f"volume {name}: {action} failed on {where}: {err}") from None
        except OSError as err:
            if is_cache_full(err):
                raise Unavailable(
                    f"volume {name}: the cache under {self.root} is full; free space there "
                    "(nothing partial was kept) and try again"
                ) from None
            raise

    def _start_ticker(self, name: str, opts: Mapping[str, Any], interval: int) -> None:
        stop = threading.Event()
        self._tickers[name] = stop

        def tick() -> None:
            while not stop.wait(interval):
                self.workers.start(name, opts, stage_first=False, join=True)

        threading.Thread(target=tick, name=f"sync-interval-{name}", daemon=True).start()

    def _stop_ticker(self, name: str) -> None:
        stop = self._tickers.pop(name, None)
        if stop is not None:
            stop.set()

    def _emit_conflict(self, name: str, record: ConflictRecord) -> None:
        hook = self.context.hook
        if hook is None:
            return
        from typing import cast

        from cargohold.core import VolumeEvent

        attributes = {"path": record.path, "copy": record.copy or "", "reason": record.reason}
        # "conflict" is not one of the core's own actions; observers get it all the same
        event = VolumeEvent(cast(Any, "conflict"), name, self.name, attributes)
        hook.cargohold_volume_event(event=event)

    def stored_options(self, name: str) -> dict[str, Any] | None:
        return stored_options(self, name)


def _delete_all(backend: Backend, attempts: int = 4) -> None:
    """``delete_remote``: again if another writer (another host, another volume on the same
    root) added something while we deleted (a directory then refuses to go)."""
    for attempt in range(attempts):
        try:
            backend.delete_all()
            return
        except (AuthFailed, ContainerNotFound):
            raise
        except BackendError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


class _Held(contextlib.AbstractContextManager[None]):
    """A lock already entered: leaving the ``with`` releases it."""

    def __init__(self, lock: contextlib.AbstractContextManager[None]) -> None:
        self._lock = lock

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(None, None, None)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"
