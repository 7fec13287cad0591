"""A threaded HTTP/1.1 server on h11 that serves a WSGI app and can hand over a connection.

The docker CLI asks for the connection itself on ``attach`` and ``exec``
(``Upgrade: tcp``, answered ``101``, then raw bytes both ways), which WSGI
servers such as waitress cannot give. h11 (python-hyper's sans-IO HTTP/1.1)
does the parsing and framing; this module adds sockets, one thread per
connection, keep-alive, a streamed request body, and ``environ
["cargohold.hijack"]``: a view calls it to answer 101 itself and take the
socket (`Hijacked`); the server then forgets the connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import h11

from cargohold.plugins.http.accept import Acceptor

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MAX_HEADERS = 64 * 1024


@dataclass
class Hijacked:
    """A connection taken over by a view: the socket, and bytes already read past the request."""

    sock: socket.socket
    pending: bytes


class _Body:
    """``wsgi.input``: the request body, read from h11 as the app asks for it."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.buffer = b""
        self.done = False

    def _fill(self) -> bool:
        if self.done:
            return False
        event = self.conn.next_event()
        if isinstance(event, h11.Data):
            self.buffer += bytes(event.data)
            return True
        self.done = True  # EndOfMessage (or the client went away)
        return False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            data, self.buffer = self.buffer, b""
            return data
        while len(self.buffer) < size and self._fill():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readline(self, size: int = -1) -> bytes:
        while b"\n" not in self.buffer and self._fill():
            pass
        cut = self.buffer.find(b"\n") + 1 or len(self.buffer)
        if 0 <= size < cut:
            cut = size
        data, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        return self.read().splitlines(keepends=True)

    def __iter__(self) -> Any:
        return iter(self.readlines())

    def drain(self) -> None:
        while self._fill():
            self.buffer = b""


class _Connection:
    """One client connection: requests one after another until it closes."""

    def __init__(self, sock: socket.socket, app: WSGIApp) -> None:
        self.sock = sock
        self.app = app
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.hijacked = False

    def next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            self.h11.receive_data(data)

    def send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            self.sock.sendall(data)

    def serve(self) -> None:
        try:
            while True:
                event = self.next_event()
                if not isinstance(event, h11.Request):
                    return  # closed, or a protocol error already answered by h11's state
                self._one(event)
                if self.hijacked or self.h11.our_state is not h11.DONE:
                    return
                if self.h11.their_state is not h11.DONE:
                    return
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError as err:
            with contextlib.suppress(Exception):
                self._plain_error(err.error_status_hint, str(err))
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            if not self.hijacked:
                with contextlib.suppress(OSError):
                    self.sock.close()

    def _plain_error(self, status: int, message: str) -> None:
        body = (json.dumps({"message": message}) + "\n").encode()
        self.send(
            h11.Response(
                status_code=status,
                headers=[("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
        )
        self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())

    def _one(self, request: h11.Request) -> None:
        body = _Body(self)
        environ = self._environ(request, body)
        status_headers: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            status_headers[:] = [status, headers]
            return lambda data: None  # the write() callable: unused by Flask

        def hijack(headers: list[tuple[str, str]]) -> Hijacked:
            """Answer 101 (or 200 to a client that did not ask to upgrade) and take the socket."""
            upgrade = any(k.lower() == b"upgrade" for k, _ in request.headers)
            status = b"101 UPGRADED" if upgrade else b"200 OK"
            lines = [b"HTTP/1.1 " + status]
            if upgrade:
                lines += [b"Connection: Upgrade", b"Upgrade: tcp"]
            lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
            self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            self.hijacked = True
            pending = body.buffer + bytes(self.h11.trailing_data[0])
            return Hijacked(self.sock, pending)

        environ["cargohold.hijack"] = hijack
        result = self.app(environ, start_response)
        try:
            if self.hijacked:
                for _ in result:  # the view is done with the socket; let Flask finish
                    pass
                return
            status, headers = status_headers
            code = int(status.split(None, 1)[0])
            self.send(h11.Response(status_code=code, headers=headers, reason=status[4:]))
            for chunk in result:
                if chunk and request.method != b"HEAD":
                    self.send(h11.Data(data=chunk))
            self.send(h11.EndOfMessage())
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if self.h11.their_state is h11.SEND_BODY:
            body.drain()

    def _environ(self, request: h11.Request, body: _Body) -> dict[str, Any]:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": "cargohold",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
            "REMOTE_ADDR": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            if name == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif name == "CONTENT_LENGTH":
                environ["CONTENT_LENGTH"] = value
            else:
                key = "HTTP_" + name
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        if "CONTENT_LENGTH" not in environ and environ.get("HTTP_TRANSFER_ENCODING"):
            environ["wsgi.input_terminated"] = True  # chunked: read to the end, not a length
        return environ


class Server:
    """Serve ``app`` on a listening socket, one thread per connection, until `shutdown`."""

    def __init__(self, listener: socket.socket, app: WSGIApp) -> None:
        self.listener = listener
        self.app = app
        self._acceptor = Acceptor(listener, self._serve, "engine-conn")

    def _serve(self, sock: socket.socket) -> None:
        _Connection(sock, self.app).serve()

    def serve_forever(self) -> None:
        self._acceptor.run()

    def shutdown(self) -> None:
        """Stop accepting; requests being served finish in their (daemon) threads."""
        self._acceptor.stop()
