"""The plugin server: each served driver's `PluginApp` on its own socket, and its shutdown."""

from __future__ import annotations

import logging
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from cargohold.core.api.errors import Unavailable
from cargohold.core.runtime import Runtime
from cargohold.core.volumes.service import VolumeService
from cargohold.plugins.docker import listen, protocol
from cargohold.plugins.docker.app import PluginApp
from cargohold.plugins.docker.health import Health
from cargohold.plugins.http.calls import CallServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenOn:
    """How one plugin is reached: a unix socket (default) or TCP, with TLS optional."""

    socket_dir: Path | None = None
    spec_dir: Path | None = None
    tcp: tuple[str, int] | None = None
    tls: listen.TlsFiles | None = None


class PluginServer:
    """Serves one driver as the Docker volume plugin ``name``.

    `start` binds (replacing a stale socket, refusing a live one), writes the
    spec file for TCP, and answers on a background thread; `stop` removes the
    socket and spec file first, so the engine never finds a dead plugin, then
    lets running calls finish.
    """

    def __init__(
        self,
        volumes: VolumeService,
        driver: str,
        name: str,
        where: ListenOn | None = None,
        *,
        app_factory: Callable[[VolumeService, str, Health], PluginApp] = PluginApp,
    ) -> None:
        self.volumes = volumes
        self.driver = driver
        self.name = name
        self.where = where or ListenOn()
        self.health = Health(name, driver)
        self.app = app_factory(volumes, driver, self.health)
        self.socket_path: Path | None = None
        self.spec_path: Path | None = None
        self.url = ""
        self._sockets_dir = self.where.socket_dir or listen.socket_dir()
        self._lock = listen.NameLock(self._sockets_dir, name)
        self._owned: dict[Path, tuple[int, int]] = {}
        self._sockets: list[socket.socket] = []
        #: set when the server cannot answer any more; `serve` then shuts down
        self.failed = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: CallServer | None = None
        self._frontend: listen.TlsFrontend | None = None
        self._private: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        self._lock.acquire()
        try:
            self._listen()
        except BaseException:
            self._remove_files()
            for sock in self._sockets:
                sock.close()
            if self._private is not None:
                self._private.cleanup()
            self._lock.release()
            raise
        self.health.address = self.url
        self._thread = threading.Thread(target=self._loop, name=f"plugin-{self.name}", daemon=True)
        self._thread.start()
        # debug only: `cargohold serve` prints this line itself, once, when all are ready
        log.debug("serving driver %s as plugin %s at %s", self.driver, self.name, self.url)

    def _listen(self) -> None:
        where = self.where
        sock_path = self._sockets_dir / f"{self.name}.sock"
        # The engine prefers a socket to a spec file: even a TCP plugin must clear one.
        listen.clear_stale_socket(sock_path)
        if where.tcp is None:
            sock = self._keep(listen.bind_unix(sock_path))
            self._own(sock_path)
            self.socket_path = sock_path
            self.url = f"unix://{sock_path}"
        elif where.tls is None:
            sock = self._keep(listen.bind_tcp(*where.tcp))
            host, port = sock.getsockname()[:2]
            self.url = f"tcp://{_advertised(host)}:{port}"
        else:
            context = where.tls.server_context()
            front = self._keep(listen.bind_tcp(*where.tcp))
            host, port = front.getsockname()[:2]
            self.url = f"https://{_advertised(host)}:{port}"
            self._private = tempfile.TemporaryDirectory(prefix="cargohold-tls-")
            backend = Path(self._private.name) / "app.sock"
            sock = self._keep(listen.bind_private_unix(backend))
            self._frontend = listen.TlsFrontend(front, context, backend)
        if where.tcp is not None:
            spec_dir = where.spec_dir or listen.spec_dir()
            self.spec_path = listen.write_spec(spec_dir, self.name, self.url, where.tls)
            self._own(self.spec_path)
        # calls on different connections (the engine opens several) run in parallel
        self._server = CallServer(sock, self.app, self.app.refuse, max_body=protocol.MAX_BODY)
        if self._frontend is not None:
            self._frontend.start()

    def _keep(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)  # closed here if the start fails half-way
        return sock

    def _own(self, path: Path) -> None:
        self._owned[path] = listen.identity(path)

    def _loop(self) -> None:
        assert self._server is not None
        try:
            self._server.serve_forever()
        except Exception:
            log.exception("plugin %s: the server loop failed", self.name)
            self.failed.set()

    def stop(self) -> None:
        """Remove the socket and spec file, finish running calls, close everything."""
        self._remove_files()
        if self._frontend is not None:
            self._frontend.close()
        if self._server is not None:
            self._server.shutdown(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._private is not None:
            self._private.cleanup()
        self._lock.release()
        log.info("plugin %s stopped", self.name)

    def _remove_files(self) -> None:
        for path, made in list(self._owned.items()):
            listen.remove_if_same(path, made)
            del self._owned[path]


def _advertised(host: str) -> str:
    """The address to put in a spec file: a wildcard bind is reached over loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def default_name(driver: str) -> str:
    """``cargohold-<driver>``: never Docker's built-in ``local``, nor anyone's plain name."""
    return f"cargohold-{driver}"


def serve(
    runtime: Runtime,
    plugins: Sequence[tuple[str, str]],
    where: ListenOn,
    *,
    ready: Callable[[list[PluginServer]], None] | None = None,
) -> None:
    """Serve each (driver, plugin name) until SIGTERM or SIGINT, then clean up.

    With TCP, each further plugin listens on the next port (any free one for 0).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    servers: list[PluginServer] = []
    try:
        for index, (driver, name) in enumerate(plugins):
            spot = where
            if where.tcp is not None and where.tcp[1] != 0:
                port = where.tcp[1] + index
                spot = ListenOn(where.socket_dir, where.spec_dir, (where.tcp[0], port), where.tls)
            server = PluginServer(runtime.volumes, driver, name, spot)
            server.start()
            servers.append(server)
        siblings = [(s.name, s.driver) for s in servers]
        for server in servers:
            server.health.siblings = siblings
        if ready is not None:
            ready(servers)
        while not stop.wait(1.0):
            broken = [s.name for s in servers if s.failed.is_set()]
            if broken:
                # a server that cannot answer must not leave its socket for the engine
                raise Unavailable(
                    f"plugin {', '.join(broken)} stopped answering (see the log above); "
                    "its socket is removed: start cargohold serve again"
                )
    finally:
        for server in reversed(servers):
            server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
