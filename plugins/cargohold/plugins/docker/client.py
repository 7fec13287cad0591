"""Any Docker volume plugin as a cargohold volume driver.

The client speaks to a plugin the way the engine does (moby ``pkg/plugins``
and ``volume/drivers``): ``POST /<Method>`` with a JSON body ending in a
newline and ``Accept: application/vnd.docker.plugins.v1.2+json``, the
``Plugin.Activate`` handshake once, then ``Capabilities`` for the scope.
Connection failures are retried after 1, 2, 4 and 8 s (about 15 s in all);
answers, even errors, are never retried. Create and Mount may take 2 minutes,
every other call 1 minute.

Two environment variables tune this for tests and slow plugins:
``CARGOHOLD_PLUGIN_BACKOFF`` (seconds between connection attempts, comma
separated; empty for a single attempt) and ``CARGOHOLD_PLUGIN_TIMEOUT`` (one
timeout in seconds for every call).

A remote plugin cannot declare its options, so the driver takes any option
and hands it over as a string; the plugin validates it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from cargohold.core.api.errors import (
    CargoholdError,
    Conflict,
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unavailable,
)
from cargohold.core.api.volume_driver import DriverContext, DriverVolume, Scope, VolumeDriver

if TYPE_CHECKING:
    # http.client, ssl and discovery are imported where a plugin is first
    # looked up or called: every cargohold command loads this module, few use it
    import http.client
    import ssl

    from cargohold.plugins.docker.discovery import PluginAddress

log = logging.getLogger(__name__)

ACCEPT = "application/vnd.docker.plugins.v1.2+json"
DEFAULT_BACKOFF: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
LONG_TIMEOUT = 120.0
SHORT_TIMEOUT = 60.0
LONG_CALLS = frozenset({"VolumeDriver.Create", "VolumeDriver.Mount"})
BACKOFF_ENV = "CARGOHOLD_PLUGIN_BACKOFF"
TIMEOUT_ENV = "CARGOHOLD_PLUGIN_TIMEOUT"
# A List of many volumes is large, but an answer this big is a broken plugin.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class RemotePluginError(CargoholdError):
    """A plugin answered with an error that names no better-known kind."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer from a plugin, undecoded."""

    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def text(self, limit: int = 500) -> str:
        shown = self.body.decode("utf-8", "replace").strip()
        return shown if len(shown) <= limit else shown[:limit] + "..."


def settings_from_env() -> dict[str, Any]:
    """``backoff`` and ``timeout`` keyword arguments from the environment."""
    settings: dict[str, Any] = {}
    backoff = os.environ.get(BACKOFF_ENV)
    if backoff is not None:
        try:
            settings["backoff"] = tuple(float(s) for s in backoff.split(",") if s.strip())
        except ValueError:
            raise InvalidArgument(
                f"{BACKOFF_ENV}={backoff!r}: give seconds separated by commas, such as 1,2,4,8"
            ) from None
    timeout = os.environ.get(TIMEOUT_ENV)
    if timeout:
        try:
            settings["timeout"] = float(timeout)
        except ValueError:
            raise InvalidArgument(f"{TIMEOUT_ENV}={timeout!r}: give seconds") from None
    return settings


def _stale_connection() -> tuple[type[OSError], ...]:
    """What the idle side of a keep-alive connection looks like when the server closed it."""
    import http.client

    return (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@functools.cache
def _unix_connection_class() -> Callable[[str, float], http.client.HTTPConnection]:
    """An HTTP connection over a unix socket (a class made on first use, for the import)."""
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self.socket_path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            self.sock = sock

    return UnixConnection


class PluginClient:
    """Calls one plugin's endpoints; thread-safe, keeps connections alive.

    ``backoff`` is the wait before each new connection attempt after a failed
    one; ``timeout``, when given, replaces the engine's per-call timeouts.
    """

    def __init__(
        self,
        address: PluginAddress,
        *,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        timeout: float | None = None,
    ) -> None:
        self.address = address
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        if address.scheme == "https":
            self._ssl = _ssl_context(address)

    @property
    def name(self) -> str:
        return self.address.name

    def timeout_for(self, method: str) -> float:
        if self.timeout is not None:
            return self.timeout
        return LONG_TIMEOUT if method in LONG_CALLS else SHORT_TIMEOUT

    # -- raw ---------------------------------------------------------------

    def post(self, method: str, body: bytes, *, timeout: float | None = None) -> Answer:
        """``POST /method`` with ``body`` as is; raise `Unavailable` if it cannot be done."""
        limit = self.timeout_for(method) if timeout is None else timeout
        conn, reused = self._connection(limit)
        while True:
            try:
                answer = self._exchange(conn, method, body, limit)
            except OSError as err:
                conn.close()
                if not (reused and isinstance(err, _stale_connection())):
                    raise self._unavailable(method, err, limit) from None
                # The server closed an idle keep-alive connection: this request
                # never reached it, so sending it once more on a new one is safe.
                log.debug("plugin %s: idle connection closed (%s), reconnecting", self.name, err)
                conn, reused = self._connection(limit, fresh=True)
                continue
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return answer

    def _exchange(
        self, conn: http.client.HTTPConnection, method: str, body: bytes, limit: float
    ) -> Answer:
        import http.client

        conn.timeout = limit
        if conn.sock is not None:
            conn.sock.settimeout(limit)
        conn.putrequest("POST", f"/{method}", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self._host_header())
        conn.putheader("Accept", ACCEPT)
        # As the engine: no Content-Type, and Content-Length always (0 for Activate).
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        try:
            response = conn.getresponse()
        except http.client.RemoteDisconnected:
            raise
        except http.client.HTTPException as err:
            raise RemotePluginError(
                f"plugin {self.name}: {method} answered with malformed HTTP ({err!r})"
            ) from None
        data = response.read(MAX_ANSWER_BYTES + 1)
        if len(data) > MAX_ANSWER_BYTES:
            conn.close()
            raise RemotePluginError(
                f"plugin {self.name}: {method} answered more than {MAX_ANSWER_BYTES} bytes"
            )
        if response.will_close:
            conn.close()
        return Answer(response.status, data, response.getheader("Content-Type", ""))

    def _connection(
        self, limit: float, *, fresh: bool = False
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection, or a new one (connecting with the engine's backoff)."""
        if not fresh:
            with self._lock:
                if self._idle:
                    return self._idle.pop(), True
        waits = list(self.backoff)
        attempts = 0
        started = time.monotonic()
        while True:
            conn = self._new_connection(limit)
            attempts += 1
            try:
                conn.connect()
                return conn, False
            except OSError as err:
                conn.close()
                if not waits:
                    raise self._unreachable(err, attempts, time.monotonic() - started) from None
                wait = waits.pop(0)
                log.warning(
                    "plugin %s at %s: %s, retrying in %.3g s",
                    self.name,
                    self.address.url,
                    err,
                    wait,
                )
                time.sleep(wait)

    def _new_connection(self, limit: float) -> http.client.HTTPConnection:
        import http.client

        if self.address.scheme == "unix":
            return _unix_connection_class()(self.address.socket_path, limit)
        host, port = self.address.host_port
        if self._ssl is not None:
            return http.client.HTTPSConnection(host, port, timeout=limit, context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=limit)

    def _release(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            return
        with self._lock:
            self._idle.append(conn)

    def _host_header(self) -> str:
        if self.address.scheme == "unix":
            return "plugin.moby.localhost"
        host, port = self.address.host_port
        return f"{host}:{port}"

    def _unreachable(self, err: OSError, attempts: int, spent: float) -> Unavailable:
        import ssl

        hint = "start the plugin"
        if isinstance(err, ssl.SSLError):
            hint = f"check the plugin's TLS settings in {self.address.source or 'its address'}"
        elif self.address.scheme == "unix":
            hint += f", or remove the stale socket {self.address.socket_path} if it is gone"
        return Unavailable(
            f"Docker volume plugin {self.name} at {self.address.describe()} cannot be reached: "
            f"{_reason(err)} ({attempts} attempt{'s' * (attempts != 1)} over {spent:.1f} s); "
            f"{hint}"
        )

    def _unavailable(self, method: str, err: OSError, limit: float) -> Unavailable:
        if isinstance(err, TimeoutError):
            what = f"did not answer {method} within {limit:g} s"
        else:
            what = f"failed during {method}: {_reason(err)}"
        return Unavailable(
            f"Docker volume plugin {self.name} at {self.address.describe()} {what}; "
            "check that the plugin is healthy (its log says more)"
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- decoded ------------------------------------------------------------

    def call(self, method: str, payload: Mapping[str, Any] | None, volume: str = "") -> Any:
        """Call ``method`` and return the decoded answer; an ``Err`` raises.

        ``payload`` None sends an empty body (as the engine does for Activate).
        """
        body = b"" if payload is None else json.dumps(payload).encode() + b"\n"
        answer = self.post(method, body)
        decoded = answer.json()
        if answer.status != 200:
            # As the engine: an {"Err"} body if there is one, else the raw text.
            err = decoded.get("Err") if isinstance(decoded, dict) else None
            message = err if isinstance(err, str) and err else answer.text()
            raise self.error(method, volume, message or f"HTTP {answer.status}", answer.status)
        if not isinstance(decoded, dict):
            raise RemotePluginError(
                f"plugin {self.name}: {method} answered something that is not a JSON object: "
                f"{answer.text(200)!r}"
            )
        err = decoded.get("Err")
        if err:
            raise self.error(method, volume, str(err), answer.status)
        return decoded

    def error(self, method: str, volume: str, message: str, status: int) -> CargoholdError:
        """The core's error for an ``Err`` answer, chosen by its wording."""
        cls = error_class(message, status)
        on = f" {volume}" if volume else ""
        return cls(f"plugin {self.name}: {method}{on}: {message}")

    def activate(self) -> list[str]:
        """The handshake: what the plugin implements."""
        answer = self.call("Plugin.Activate", None)
        implements = answer.get("Implements")
        if not isinstance(implements, list):
            raise RemotePluginError(
                f"plugin {self.name}: Plugin.Activate answered without an Implements list: "
                f"{answer!r}"
            )
        return [str(i) for i in implements]

    def scope(self) -> Scope:
        """The scope from ``Capabilities``; as the engine, any failure means local."""
        try:
            answer = self.call("VolumeDriver.Capabilities", {})
        except Unavailable:
            raise
        except CargoholdError as err:
            log.debug("plugin %s has no Capabilities (%s): scope local", self.name, err)
            return "local"
        capabilities = answer.get("Capabilities")
        scope = capabilities.get("Scope") if isinstance(capabilities, dict) else None
        lowered = scope.lower() if isinstance(scope, str) else "local"
        if lowered not in ("local", "global"):
            log.warning("plugin %s declares unknown scope %r: using local", self.name, scope)
            return "local"
        return cast(Scope, lowered)


def error_class(message: str, status: int = 500) -> type[CargoholdError]:
    """Best effort: plugins have only free text, so read it as a person would."""
    text = message.lower()
    if any(w in text for w in ("not found", "no such", "does not exist", "doesn't exist")):
        return NotFound
    if any(w in text for w in ("in use", "busy", "is mounted", "still mounted")):
        return InUse
    if any(w in text for w in ("already exists", "conflict")):
        return Conflict
    if "option" in text and any(w in text for w in ("unknown", "unsupported", "invalid")):
        return InvalidArgument
    if any(w in text for w in ("not supported", "not implemented", "unsupported")):
        return NotSupported
    if status == 400 or any(w in text for w in ("invalid", "unknown option", "must ", "bad ")):
        return InvalidArgument
    if status == 404:
        return NotSupported
    return RemotePluginError


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _ssl_context(address: PluginAddress) -> ssl.SSLContext:
    import ssl

    tls = address.tls
    context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
    if tls is not None:
        if tls.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.cert_file:
            try:
                context.load_cert_chain(tls.cert_file, tls.key_file or None)
            except (OSError, ssl.SSLError) as err:
                raise InvalidArgument(
                    f"plugin {address.name}: cannot load client certificate {tls.cert_file} "
                    f"(from {address.source}): {err}"
                ) from None
    return context


class DockerPluginDriver(VolumeDriver):
    """A volume driver whose bytes live behind a Docker volume plugin.

    Built by `connect`, which activates the plugin and makes a subclass
    carrying the plugin's name and scope.
    """

    name: ClassVar[str] = "docker-plugin"
    accepts_any_option: ClassVar[bool] = True

    def __init__(self, context: DriverContext, client: PluginClient) -> None:
        super().__init__(context)
        self.client = client

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        # As the engine: Opts is null when no option was given.
        sent = {k: _option_text(v) for k, v in opts.items()} or None
        self.client.call("VolumeDriver.Create", {"Name": name, "Opts": sent}, name)

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        self.client.call("VolumeDriver.Remove", {"Name": name}, name)
        self._held(name).unlink(missing_ok=True)

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        held = self._held(name)
        if held.exists():
            # Mounted before a crash of the core: the plugin still counts our
            # Mount, so another would need two Unmounts (rclone refuses it).
            with contextlib.suppress(CargoholdError):
                return self.path(name)
        payload = {"Name": name, "ID": self.plugin_mount_id(name)}
        answer = self.client.call("VolumeDriver.Mount", payload, name)
        path = self._mountpoint(answer, "VolumeDriver.Mount", name)
        held.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        held.write_text(str(path))
        return path

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        payload = {"Name": name, "ID": self.plugin_mount_id(name)}
        self.client.call("VolumeDriver.Unmount", payload, name)
        self._held(name).unlink(missing_ok=True)

    def _held(self, name: str) -> Path:
        """Marks a Mount this state has sent and not yet undone."""
        return self.root / "mounted" / name

    def plugin_mount_id(self, name: str) -> str:
        """The one mount id this cargohold state uses for ``name`` towards the plugin.

        The core sends the first user's id to `mount` and the last one's to
        `unmount`; a plugin counting per id would never see them pair up. So
        every Mount and Unmount carries an id made from the state directory
        and the volume: stable across processes, distinct between states.
        """
        import hashlib

        return hashlib.sha256(f"cargohold\0{self.root}\0{name}".encode()).hexdigest()

    def path(self, name: str) -> Path:
        answer = self.client.call("VolumeDriver.Path", {"Name": name}, name)
        return self._mountpoint(answer, "VolumeDriver.Path", name)

    def get(self, name: str) -> DriverVolume:
        answer = self.client.call("VolumeDriver.Get", {"Name": name}, name)
        volume = answer.get("Volume")
        if volume is None:
            # The engine reads a null Volume without Err as "no such volume".
            raise NotFound(f"plugin {self.client.name} has no volume {name}")
        return self._volume(volume, "VolumeDriver.Get")

    def list(self) -> list[DriverVolume]:
        answer = self.client.call("VolumeDriver.List", {})
        volumes = answer.get("Volumes") or []
        if not isinstance(volumes, list):
            raise RemotePluginError(f"plugin {self.client.name}: List answered Volumes={volumes!r}")
        return [self._volume(v, "VolumeDriver.List") for v in volumes]

    def close(self) -> None:
        self.client.close()

    def _volume(self, data: object, method: str) -> DriverVolume:
        if not isinstance(data, dict) or not isinstance(data.get("Name"), str):
            raise RemotePluginError(
                f"plugin {self.client.name}: {method} answered a volume without a Name: {data!r}"
            )
        mountpoint = data.get("Mountpoint")
        status = data.get("Status")
        return DriverVolume(
            name=data["Name"],
            mountpoint=Path(mountpoint) if isinstance(mountpoint, str) and mountpoint else None,
            status=status if isinstance(status, dict) else {},
        )

    def _mountpoint(self, answer: Mapping[str, Any], method: str, name: str) -> Path:
        mountpoint = answer.get("Mountpoint")
        if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
            raise RemotePluginError(
                f"plugin {self.client.name}: {method} {name} answered no absolute Mountpoint "
                f"({mountpoint!r})"
            )
        return Path(mountpoint)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def connect(
    address: PluginAddress,
    context: DriverContext,
    *,
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    timeout: float | None = None,
) -> DockerPluginDriver:
    """Activate the plugin at ``address`` and return a driver for it."""
    client = PluginClient(address, backoff=backoff, timeout=timeout)
    try:
        implements = client.activate()
        if "VolumeDriver" not in implements:
            raise NotSupported(
                f"plugin {address.name} at {address.describe()} implements "
                f"{', '.join(implements) or 'nothing'}, not VolumeDriver: it is no volume plugin"
            )
        scope = client.scope()
    except BaseException:
        client.close()
        raise
    cls = type(
        f"DockerPlugin[{address.name}]",
        (DockerPluginDriver,),
        {"name": address.name, "scope": scope, "__module__": __name__},
    )
    return cast(type[DockerPluginDriver], cls)(context, client)


# A plugin that could not be reached is not tried again for this long, so
# listing many volumes of a dead plugin waits out the backoff once, not per volume.
FAILURE_MEMORY = 10.0
_failures: dict[PluginAddress, tuple[float, str]] = {}
_failures_lock = threading.Lock()


def find_driver(name: str, context: DriverContext) -> VolumeDriver:
    """A Docker volume plugin named ``name``, found where the engine finds plugins.

    When there is none, `NotFound` says which directories were searched, so the
    unknown-driver error names them.
    """
    from cargohold.plugins.docker.discovery import find_plugin, searched_dirs

    address = find_plugin(name)
    if address is None:
        places = ", ".join(str(d) for d in searched_dirs())
        raise NotFound(f"no Docker volume plugin {name!r} either (looked in {places})")
    with _failures_lock:
        failed_at, message = _failures.get(address, (-FAILURE_MEMORY, ""))
    if time.monotonic() - failed_at < FAILURE_MEMORY:
        raise Unavailable(message)
    try:
        return connect(address, context, **settings_from_env())
    except Unavailable as err:
        with _failures_lock:
            _failures[address] = (time.monotonic(), str(err))
        raise


__all__ = [
    "Answer",
    "DockerPluginDriver",
    "PluginClient",
    "RemotePluginError",
    "connect",
    "error_class",
]
