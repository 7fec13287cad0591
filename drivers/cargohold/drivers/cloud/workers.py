"""Background write-back: one worker thread per volume with a batch to upload.

A worker takes the volume's flush lock (so one process at a time writes a
volume back), runs the engine's flush until nothing is left, and retries with
backoff when the service fails. A restarted plugin finds every journal still
pending and starts a worker for it, with the options the core stored for the
volume (secret references resolved through the runtime's hook, as the core does).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cargohold.drivers.cloud.engine import LockTimeout

if TYPE_CHECKING:
    from cargohold.drivers.cloud.base import CloudDriver

log = logging.getLogger(__name__)

_MAX_BACKOFF = 60.0


class Workers:
    """The write-back threads of one driver instance."""

    def __init__(self, driver: CloudDriver) -> None:
        self.driver = driver
        self._threads: dict[str, threading.Thread] = {}
        self._again: set[str] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # bumped by `cancel`: a worker started under an older epoch stops
        self._epochs: dict[str, int] = {}

    def running(self, name: str) -> bool:
        with self._lock:
            thread = self._threads.get(name)
        return thread is not None and thread.is_alive()

    def start(
        self, name: str, opts: Mapping[str, Any], *, stage_first: bool, join: bool = False
    ) -> None:
        """Make sure a worker writes ``name`` back; with ``stage_first``, journal changes now."""
        if stage_first:
            engine = self.driver.engine(name, opts)
            try:
                with engine.locked(timeout=0):
                    if engine.stage() == 0:
                        return  # nothing changed: no write-back to run
            except LockTimeout:
                pass  # a flush is running (here or elsewhere): it stages again when done
            finally:
                engine.close()
        with self._lock:
            thread = self._threads.get(name)
            if thread is not None and thread.is_alive():
                self._again.add(name)
            elif not self._closing.is_set():
                epoch = self._epochs.get(name, 0)
                thread = threading.Thread(
                    target=self._run, args=(name, dict(opts), epoch), name=f"write-back-{name}"
                )
                self._threads[name] = thread
                thread.start()
        if join and thread is not None:
            thread.join()

    def cancel(self, name: str) -> None:
        """A mount or remove takes over: a running worker stops at its next attempt.

        (An attempt in progress finishes; the caller waits for it through the flush lock.)
        """
        with self._lock:
            self._epochs[name] = self._epochs.get(name, 0) + 1
            if self._threads.get(name) is not None:
                self._again.discard(name)

    def wait(self, name: str, timeout: float | None = None) -> None:
        """Wait for this process's worker on ``name``, if any, to finish."""
        with self._lock:
            thread = self._threads.get(name)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, name: str, opts: dict[str, Any], epoch: int) -> None:
        secrets = [str(opts[o.name]) for o in self.driver.options if o.secret and opts.get(o.name)]
        delay = 1.0
        while True:
            try:
                engine = self.driver.engine(name, opts)
            except Exception as err:
                log.warning("volume %s: write-back cannot start: %s", name, _redact(err, secrets))
                break
            try:
                with engine.locked():
                    with self._lock:
                        current = self._epochs.get(name, 0)
                        if current != epoch and name in self._again:
                            # taken over, then handed back (an unmount after the mount)
                            self._again.discard(name)
                            epoch = current
                    if current != epoch:
                        break  # a mount or remove took over this volume's write-back
                    if not (engine.home / "volume.json").exists():
                        break  # the volume is gone
                    engine.flush()
                delay = 1.0
                with self._lock:
                    if name in self._again:
                        self._again.discard(name)
                        continue
                    break
            except Exception as err:
                message = _redact(err, secrets)
                log.warning("volume %s: write-back stopped: %s", name, message)
                try:
                    engine.note(last_error=message)
                except OSError:
                    break  # the volume is gone
                if self._closing.wait(delay):
                    break  # shutting down: the journal keeps the rest for the next start
                delay = min(_MAX_BACKOFF, delay * 2)
            finally:
                engine.close()
        with self._lock:
            if self._threads.get(name) is threading.current_thread():
                del self._threads[name]

    def resume_all(self) -> None:
        """Start a worker for every volume whose journal says a write-back is pending."""
        homes = [h for h in self.driver.root.iterdir() if (h / "journal" / "ops.json").exists()]
        if not homes:
            return

        def resume() -> None:
            for home in homes:
                opts = stored_options(self.driver, home.name)
                if opts is None:
                    log.warning(
                        "volume %s: a write-back is pending but its options are not known "
                        "here; it resumes at the next mount, unmount or volume sync",
                        home.name,
                    )
                    continue
                self.start(home.name, opts, stage_first=False)

        threading.Thread(target=resume, name="write-back-resume", daemon=True).start()

    def close(self) -> None:
        """Let running flushes finish (a failing one stops at its next retry)."""
        self._closing.set()
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join()


def _redact(err: BaseException, secrets: list[str]) -> str:
    text = str(err) or type(err).__name__
    for secret in secrets:
        text = text.replace(secret, "********")
    return text


def stored_options(driver: CloudDriver, name: str) -> dict[str, Any] | None:
    """The options the core stored for volume ``name``, converted, secrets resolved.

    Used only to resume a write-back after a restart, before the core has called
    the driver with the options. None if they cannot be had.
    """
    state_db = driver.root.parent.parent / "state.db"
    hook = driver.context.hook
    if not state_db.exists() or hook is None:
        return None
    store_cls: Any = None
    for module in ("cargohold.core.state.volume_store", "cargohold.core.store"):
        try:
            store_cls = importlib.import_module(module).Store
            break
        except (ImportError, AttributeError):
            continue
    if store_cls is None:
        return None
    try:
        store = store_cls(state_db)
        try:
            record = store.get(name)
        finally:
            store.close()
    except Exception:
        log.exception("volume %s: reading its stored options failed", name)
        return None
    if record is None or record.driver != driver.name:
        return None
    return resolve_options(driver, record.options, hook)


def resolve_options(
    driver: CloudDriver, raw: Mapping[str, str], hook: Any
) -> dict[str, Any] | None:
    """Stored option text -> what the driver is handed (converted, secrets resolved).

    None if a secret reference resolves to nothing.
    """
    opts: dict[str, Any] = {}
    for option in driver.options:
        given = raw.get(option.name)
        if given is None:
            if option.default is not None:
                opts[option.name] = option.default
            continue
        if option.secret:
            value = hook.cargohold_resolve_secret(ref=given)
            if value is None:
                return None
            opts[option.name] = value
        else:
            opts[option.name] = option.convert(given)
    return opts
