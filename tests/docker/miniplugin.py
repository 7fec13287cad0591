"""A small Docker volume plugin written for the client's tests, on the stdlib alone.

It follows the protocol facts (idempotent Create, per-id counting, RFC 3339
CreatedAt, Err answers), records every request it gets, and can be told to
misbehave in named ways (``flaws``) so the conformance checker has something
to catch. It listens on a unix socket, or on TCP with optional TLS.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import socketserver
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cargohold.core.kernel import mounts

NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")

#: Ways the plugin can be told to break the protocol.
FLAWS = frozenset(
    {
        "ids-as-set",  # counts mounts by a set of ids: a repeated id unmounts too early
        "created-at-no-zone",  # CreatedAt without a time zone
        "remove-while-mounted",  # Remove succeeds on a mounted volume
        "accept-missing-name",  # Create with no Name makes a volume called ""
        "accept-any-name",  # any string is a name, "../x" too: a volume outside the root
        "no-capabilities",  # Capabilities answers 404
        "never-unmounts",  # with real_mounts: the last Unmount leaves the mount in place
        "html-errors",  # unknown endpoints and bad JSON get a 500 HTML page, as a proxy's
    }
)


@dataclass
class Request:
    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Volume:
    created: str
    opts: dict[str, str]
    refs: Counter[str] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)


class MiniPlugin:
    """The plugin's state; `serve_unix` / `serve_tcp` put it on the wire."""

    def __init__(
        self,
        root: Path,
        *,
        implements: tuple[str, ...] = ("VolumeDriver",),
        scope: str = "local",
        flaws: frozenset[str] | set[str] = frozenset(),
        delays: dict[str, float] | None = None,
        make_volume: Callable[[Path], None] | None = None,
        real_mounts: bool = False,
    ) -> None:
        """``make_volume`` makes a volume's directory (default mkdir); with
        ``real_mounts`` the first Mount bind-mounts it on itself and the last
        Unmount unmounts it, as a plugin attaching real storage does (root only)."""
        assert set(flaws) <= FLAWS, f"unknown flaws: {set(flaws) - FLAWS}"
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.implements = implements
        self.scope = scope
        self.flaws = set(flaws)
        self.delays = dict(delays or {})
        self.make_volume = make_volume or (lambda path: path.mkdir(exist_ok=True))
        self.real_mounts = real_mounts
        self.volumes: dict[str, _Volume] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self.connections: set[socket.socket] = set()

    # -- protocol -------------------------------------------------------------

    def handle(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "Plugin.Activate":
            return 200, {"Implements": list(self.implements)}
        if method == "VolumeDriver.Capabilities":
            if "no-capabilities" in self.flaws:
                return 404, {"Err": "404 page not found"}
            return 200, {"Capabilities": {"Scope": self.scope}}
        handler = getattr(self, "do_" + method.removeprefix("VolumeDriver."), None)
        if not method.startswith("VolumeDriver.") or handler is None:
            if "html-errors" in self.flaws:
                return 500, {}  # the handler sends the HTML page for an empty answer
            return 404, {"Err": f"unknown endpoint /{method}"}
        try:
            request = json.loads(body)
        except ValueError as err:
            if "html-errors" in self.flaws:
                return 500, {}
            return 400, {"Err": f"bad JSON: {err}"}
        if not isinstance(request, dict):
            return 400, {"Err": "the body must be a JSON object"}
        with self.lock:
            answer: dict[str, Any] = handler(request)
        answer.setdefault("Err", "")
        return 200, answer

    def _name(self, request: dict[str, Any], *, creating: bool = False) -> str:
        name = request.get("Name")
        if creating and name is None and "accept-missing-name" in self.flaws:
            return ""
        if isinstance(name, str) and "accept-any-name" in self.flaws:
            return name
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"invalid volume name {name!r}")
        return name

    def do_Create(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name = self._name(request, creating=True)
        except ValueError as err:
            return {"Err": str(err)}
        opts = request.get("Opts") or {}
        if not isinstance(opts, dict):
            return {"Err": "Opts must be an object"}
        if name not in self.volumes:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            if "created-at-no-zone" in self.flaws:
                stamp = stamp.removesuffix("+00:00")
            self.volumes[name] = _Volume(stamp, opts)
            self.make_volume(self.root / (name or "_unnamed"))
        return {}

    def _existing(self, request: dict[str, Any]) -> tuple[str, _Volume]:
        name = self._name(request)
        if name not in self.volumes:
            raise LookupError(f"volume {name} not found")
        return name, self.volumes[name]

    def do_Remove(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name, volume = self._existing(request)
        except (ValueError, LookupError) as err:
            return {"Err": str(err)}
        if (volume.refs or volume.ids) and "remove-while-mounted" not in self.flaws:
            return {"Err": f"volume {name} is in use"}
        del self.volumes[name]
        shutil.rmtree(self.root / name, ignore_errors=True)
        return {}

    def do_Mount(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name, volume = self._existing(request)
        except (ValueError, LookupError) as err:
            return {"Err": str(err)}
        mount_id = str(request.get("ID", ""))
        first = not self._mounted(volume)
        if "ids-as-set" in self.flaws:
            volume.ids.add(mount_id)
        else:
            volume.refs[mount_id] += 1
        if first and self.real_mounts:
            mounts.bind(self.root / name, self.root / name, recursive=False)
        return {"Mountpoint": str(self.root / name)}

    def do_Unmount(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name, volume = self._existing(request)
        except (ValueError, LookupError) as err:
            return {"Err": str(err)}
        mount_id = str(request.get("ID", ""))
        was = self._mounted(volume)
        volume.ids.discard(mount_id)
        if volume.refs[mount_id] > 0:
            volume.refs[mount_id] -= 1
        volume.refs += Counter()  # drop zero counts
        released = was and not self._mounted(volume)
        if released and self.real_mounts and "never-unmounts" not in self.flaws:
            mounts.umount(self.root / name)
        return {}

    def _mounted(self, volume: _Volume) -> bool:
        return bool(volume.ids if "ids-as-set" in self.flaws else volume.refs)

    def do_Path(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name, volume = self._existing(request)
        except (ValueError, LookupError) as err:
            return {"Err": str(err)}
        return {"Mountpoint": str(self.root / name) if self._mounted(volume) else ""}

    def do_Get(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            name, volume = self._existing(request)
        except (ValueError, LookupError) as err:
            return {"Err": str(err)}
        return {"Volume": self._view(name, volume)}

    def do_List(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"Volumes": [self._view(n, v) for n, v in sorted(self.volumes.items())]}

    def _view(self, name: str, volume: _Volume) -> dict[str, Any]:
        return {
            "Name": name,
            "Mountpoint": str(self.root / name) if self._mounted(volume) else "",
            "CreatedAt": volume.created,
            "Status": {"opts": volume.opts},
        }

    # -- wire -----------------------------------------------------------------

    def serve_unix(self, path: Path) -> None:
        server = _UnixServer(str(path), _handler_for(self))
        self._start(server)

    def serve_tcp(self, context: ssl.SSLContext | None = None) -> int:
        """Listen on 127.0.0.1 (TLS with ``context``); return the port."""
        server = _TCPServer(("127.0.0.1", 0), _handler_for(self))
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._start(server)
        return int(server.server_address[1])

    def _start(self, server: socketserver.BaseServer) -> None:
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop as a dying process would: keep-alive connections close too."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self.real_mounts:  # what a flaw (or a failed check) left mounted
            for path in self.root.iterdir():
                while mounts.is_mountpoint(path):
                    mounts.umount(path, detach=True)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def get_request(self) -> tuple[socket.socket, Any]:
        # Finish TLS handshakes in the handler thread, not the accept loop.
        sock, addr = self.socket.accept()
        return sock, addr


def _handler_for(plugin: MiniPlugin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the engine's client uses

        def setup(self) -> None:
            super().setup()
            plugin.connections.add(self.connection)

        def finish(self) -> None:
            plugin.connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            method = self.path.lstrip("/")
            plugin.requests.append(Request(method, dict(self.headers.items()), body))
            time.sleep(plugin.delays.get(method, 0))
            status, answer = plugin.handle(method, body)
            kind = "application/vnd.docker.plugins.v1+json"
            data = json.dumps(answer).encode()
            if status == 500 and not answer:
                kind, data = "text/html", b"<html><head><title>500 Oops</title></head></html>\n"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
