"""A lean HTTP/1.1 server for request-answer calls: small bodies in, small bodies out.

The Docker volume-plugin protocol is nine ``POST``s of a JSON object, each
answered with one; the engine waits on every answer, so the server's own cost
per call is the plugin's latency. A WSGI stack (Flask on waitress) spent
about 0.5 ms of it per call, handing each request from the event loop to a
worker thread and through the framework. Here a thread per connection reads
the socket, httptools (llhttp, the parser behind Node.js) parses, and the
handler's answer goes out in one ``sendall``: a no-op call answers in
about 0.2 ms, most of it the client's own time.

What it gives a handler is deliberately little: method, path and the whole
body (`Call`); it sends back status, type and bytes (`Answer`). Request
framing is httptools' (``Content-Length`` or chunked, pipelining, keep-alive);
this module adds the limits (head and body size, refused before the body is
read), ``Expect: 100-continue``, and a lingering close after a refusal, so a
client still sending reads the answer instead of a reset connection.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import NamedTuple

import httptools

from cargohold.plugins.http.accept import Acceptor

log = logging.getLogger(__name__)

#: Request line plus headers; a real call's are a few hundred bytes.
MAX_HEAD = 64 * 1024
#: After a refusal, how long to read (and drop) what the client still sends.
LINGER_SECONDS = 2.0


class Call(NamedTuple):  # (built per request: a tuple is cheaper than a frozen dataclass)
    """One request as a handler sees it; ``path`` is the target without its query."""

    method: str
    path: str
    body: bytes


class Answer(NamedTuple):
    """What a handler answers: sent with a ``Content-Length``, never chunked."""

    status: int
    body: bytes
    content_type: str


#: Serves one call; an exception that escapes it is the server's bug report (500).
Handle = Callable[[Call], Answer]
#: (status, problem, path) -> the answer to a request refused before the handler,
#: for broken HTTP (400), an oversized head (431) or body (413); path may be "".
Refuse = Callable[[int, str, str], Answer]


class _Refusal(NamedTuple):
    """A request answered with an error before any handler sees it."""

    status: int
    problem: str


class _Connection:
    """One client: its parser callbacks collect whole calls, `serve` answers them in order."""

    def __init__(self, server: CallServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.parser = httptools.HttpRequestParser(self)
        self.ready: list[tuple[Call, bool]] = []
        #: bytes read while a head is incomplete: the parser keeps a header line
        #: until it ends, so an endless one is cut off here
        self.head_read = 0
        self.in_head = True
        self._begin()

    def _begin(self) -> None:
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0
        self.expects_continue = False
        self.refusal: _Refusal | None = None

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begin()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        lowered = name.lower()
        if lowered == b"content-length" and value.strip().isdigit():
            if int(value) > self.server.max_body:
                self.refusal = _Refusal(413, f"body of {int(value)} bytes")
        elif lowered == b"expect" and value.strip().lower() == b"100-continue":
            self.expects_continue = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.head_size > MAX_HEAD and self.refusal is None:
            self.refusal = _Refusal(431, f"request head is larger than {MAX_HEAD} bytes")
        if self.refusal is None and self.expects_continue:
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.refusal is not None:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.refusal = _Refusal(413, f"body of over {self.server.max_body} bytes")
            self.body.clear()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_head, self.head_read = True, 0
        if self.refusal is not None:
            return  # answered by the refusal, never by the handler
        path = self.url.partition(b"?")[0].decode("latin-1")
        method = self.parser.get_method().decode("latin-1")
        call = Call(method, path, b"".join(self.body))
        self.ready.append((call, self.parser.should_keep_alive()))

    # -- the loop ----------------------------------------------------------------------

    def serve(self) -> None:
        try:
            while self._receive():
                for call, keep_alive in self.ready:
                    self._send(self.server.answer(call), keep_alive, call.method == "HEAD")
                    if not keep_alive:
                        return
                self.ready.clear()
                # a refusal is noticed once the head is in: answered before the body is read
                if self.refusal is not None:
                    self._refuse(*self.refusal)
                    return
        except (ConnectionError, TimeoutError):
            pass  # the client went away mid-answer: nobody is left to tell
        finally:
            self.server.forget(self)
            with contextlib.suppress(OSError):
                self.sock.close()

    def _receive(self) -> bool:
        """Read once and parse; False when the connection is over (EOF or broken HTTP)."""
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        if self.in_head:
            self.head_read += len(data)
            if self.head_read > MAX_HEAD + 65536:  # well past any head the parser could end
                self._refuse(431, f"request head is larger than {MAX_HEAD} bytes")
                return False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "this server does not upgrade connections")
            return False
        except httptools.HttpParserError as err:
            self._refuse(400, str(err) or type(err).__name__)
            return False
        return True

    def _send(self, answer: Answer, keep_alive: bool, head_only: bool = False) -> None:
        head = _status_and_type(answer.status, answer.content_type)
        head += b"Content-Length: %d\r\n" % len(answer.body)
        if not keep_alive:
            head += b"Connection: close\r\n"
        head += b"\r\n"
        self.sock.sendall(head if head_only else head + answer.body)

    def _refuse(self, status: int, problem: str) -> None:
        path = self.url.partition(b"?")[0].decode("latin-1", "replace")
        answer = self.server.refuse(status, problem, path)
        with contextlib.suppress(OSError):
            self._send(answer, keep_alive=False)
            self.sock.shutdown(socket.SHUT_WR)
            # read on a moment, so a client still sending gets the answer, not a reset
            self.sock.settimeout(0.2)
            deadline = time.monotonic() + LINGER_SECONDS
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass


@functools.cache
def _status_and_type(status: int, content_type: str) -> bytes:
    """The answer's first lines, made once per kind: every call sends them."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n".encode("latin-1")


class CallServer:
    """Serve ``handle`` on a listening socket, one thread per connection, until `shutdown`."""

    def __init__(
        self, listener: socket.socket, handle: Handle, refuse: Refuse, *, max_body: int
    ) -> None:
        self.listener = listener
        self.handle = handle
        self.refuse = refuse
        self.max_body = max_body
        self._acceptor = Acceptor(listener, self._serve, "call-conn")
        self._lock = threading.Lock()
        self._open: dict[_Connection, threading.Thread] = {}

    def serve_forever(self) -> None:
        """Accept until `shutdown`; an accept that fails otherwise is raised."""
        self._acceptor.run()

    def _serve(self, sock: socket.socket) -> None:
        connection = _Connection(self, sock)
        with self._lock:
            self._open[connection] = threading.current_thread()
        if self._acceptor.stopping.is_set():  # accepted as shutdown began: it would be missed
            connection.sock.shutdown(socket.SHUT_RD)
        connection.serve()

    def answer(self, call: Call) -> Answer:
        try:
            return self.handle(call)
        except Exception as err:  # the handler's bug: answered, logged, the server goes on
            log.exception("%s %s: unexpected error", call.method, call.path)
            return self.refuse(500, f"internal error: {type(err).__name__}: {err}", call.path)

    def forget(self, connection: _Connection) -> None:
        with self._lock:
            self._open.pop(connection, None)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting, close idle connections, let calls being answered finish."""
        self._acceptor.stop()
        with self._lock:
            running = list(self._open.items())
        for connection, _ in running:
            # an idle connection's recv returns at once; a busy one answers, then ends
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + timeout
        for _, thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
