"""The plugin server: one Flask app per served driver under waitress, and its shutdown."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from cargohold.core.api.errors import Unavailable
from cargohold.core.runtime import Runtime
from cargohold.core.volumes.service import VolumeService
from cargohold.plugins.docker import listen, protocol
from cargohold.plugins.docker.app import create_app
from cargohold.plugins.docker.health import Health

log = logging.getLogger(__name__)

#: Worker threads per served driver: calls on different volumes run in parallel.
THREADS = 4


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
        threads: int = THREADS,
        app_factory: Callable[[VolumeService, str, Health], Flask] = create_app,
    ) -> None:
        self.volumes = volumes
        self.driver = driver
        self.name = name
        self.where = where or ListenOn()
        self.threads = threads
        self.health = Health(name, driver)
        self.app = app_factory(volumes, driver, self.health)
        self.socket_path: Path | None = None
        self.spec_path: Path | None = None
        self.url = ""
        self._sockets_dir = self.where.socket_dir or listen.socket_dir()
        self._lock = listen.NameLock(self._sockets_dir, name)
        self._owned: dict[Path, tuple[int, int]] = {}
        self._sockets: list[socket.socket] = []
        self._map: dict[int, Any] = {}
        self._stopping = threading.Event()
        #: set when the server cannot answer any more; `serve` then shuts down
        self.failed = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
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
        self._server = create_server(
            self.app,
            map=self._map,
            sockets=[sock],
            threads=self.threads,
            ident="cargohold",
            # refused by waitress before a byte of the body is buffered
            max_request_body_size=protocol.MAX_BODY + 1,
            clear_untrusted_proxy_headers=False,
            asyncore_use_poll=True,
        )
        # waitress's own refusals (oversized body, broken HTTP) answer {"Err"} too
        self._server.channel_class = json_error_channel(self.health)
        if self._frontend is not None:
            self._frontend.start()

    def _keep(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)  # closed here if the start fails half-way
        return sock

    def _own(self, path: Path) -> None:
        self._owned[path] = listen.identity(path)

    def _loop(self) -> None:
        server = self._server
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
        except Exception:
            log.exception("plugin %s: the server loop failed", self.name)
            self.failed.set()
        finally:
            server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self._map, ignore_all=True)

    def stop(self) -> None:
        """Remove the socket and spec file, finish running calls, close everything."""
        self._remove_files()
        if self._frontend is not None:
            self._frontend.close()
        self._stopping.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.pull_trigger()
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


def json_error_channel(health: Health) -> type[HTTPChannel]:
    """A waitress channel whose own error answers are ``{"Err": ...}``, not plain text."""

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            # the stubs type `request` as the error; at run time it is the parser holding it
            request: Any = self.request
            error = request.error
            if isinstance(error, RequestEntityTooLarge):
                message = protocol.too_large_message()
            else:
                message = f"{error.reason}: {error.body}"
            # a request that broke before its first line was parsed has no path
            path = str(getattr(request, "path", "") or "").lstrip("/")
            health.failed(path or "-", None, message, error.code)
            body = (json.dumps(protocol.error_answer(message)) + "\n").encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers = [("Content-Type", protocol.CONTENT_TYPE)]
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel


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
