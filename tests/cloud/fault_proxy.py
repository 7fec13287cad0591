"""A fault-injecting HTTP/1.1 proxy to put in front of the test servers (moto, fake-gcs, Azure).

Clients talk to ``127.0.0.1:proxy.port`` as if it were the server. The proxy
parses each request on a keep-alive connection, so faults apply per request:

    proxy = FaultProxy("127.0.0.1", server_port).start()
    proxy.fail_next(2, status=503)          # the next two requests get a 503
    proxy.drop_next(1, after_bytes=1000)    # forwarded, then the connection dies mid-response
    proxy.delay_next(3, seconds=0.5)        # latency
    proxy.fail_next(1, match=lambda method, target: "comp=range" in target)

A dropped request *is* executed by the server (only the answer is lost), which is
the hard case for a client: its retry must cope with an operation that succeeded.
Standard library only; bodies are streamed, so 256 MB transfers cost no memory.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO

Match = Callable[[str, str], bool]
_CHUNK = 256 * 1024


@dataclass
class _Rule:
    kind: str  # "fail" | "drop" | "delay"
    remaining: int
    match: Match | None
    status: int = 503
    body: bytes = b""
    after_bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Seen:
    """One request the proxy handled, and the fault (if any) applied to it."""

    method: str
    target: str
    fault: str | None


class _Closed(Exception):
    """The peer closed the connection."""


def _read_head(f: BinaryIO) -> list[bytes]:
    """Start line and header lines of a message, without line endings."""
    lines: list[bytes] = []
    while True:
        line = f.readline(65537)
        if not line:
            raise _Closed
        if line in (b"\r\n", b"\n"):
            if not lines:  # tolerate stray blank lines between messages
                continue
            return lines
        lines.append(line.rstrip(b"\r\n"))


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        out[name.strip().lower()] = value.strip()
    return out


def _copy_body(src: BinaryIO, dst: Callable[[bytes], None], headers: dict[str, str]) -> bool:
    """Copy a message body framed by ``headers``; False if it runs until EOF (no framing)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = src.readline(65537)
            if not size_line:
                raise _Closed
            dst(size_line)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    line = src.readline(65537)
                    dst(line)
                    if line in (b"\r\n", b"\n", b""):
                        return True
            _copy_exact(src, dst, size + 2)
    if "content-length" in headers:
        _copy_exact(src, dst, int(headers["content-length"]))
        return True
    return False


def _copy_exact(src: BinaryIO, dst: Callable[[bytes], None], n: int) -> None:
    while n > 0:
        data = src.read(min(n, _CHUNK))
        if not data:
            raise _Closed
        dst(data)
        n -= len(data)


class _Dropped(Exception):
    """The injected drop point was reached."""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    # headers and body leave as separate writes: Nagle would hold the body for the ACK
    disable_nagle_algorithm = True

    def handle(self) -> None:
        proxy = self.server.proxy
        upstream: socket.socket | None = None
        up_r: BinaryIO | None = None
        try:
            while True:
                try:
                    head = _read_head(self.rfile)  # type: ignore[arg-type]
                except _Closed:
                    return
                method, target = [*head[0].decode("latin-1").split(" "), "", ""][:2]
                headers = _headers(head)
                rule = proxy._take(method, target)
                proxy._record(Seen(method, target, rule.kind if rule else None))
                if headers.get("expect", "").lower() == "100-continue":
                    # answer the interim response here, so the upstream never has to
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = [h for h in head if not h.lower().startswith(b"expect:")]
                if rule and rule.kind == "delay":
                    time.sleep(rule.seconds)
                if rule and rule.kind == "fail":
                    _copy_body(self.rfile, lambda _b: None, headers)  # type: ignore[arg-type]
                    self._send_failure(rule)
                    continue
                if upstream is None:
                    upstream = socket.create_connection(proxy.upstream, timeout=proxy.timeout)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    up_r = upstream.makefile("rb")
                assert up_r is not None
                upstream.sendall(b"\r\n".join(head) + b"\r\n\r\n")
                _copy_body(self.rfile, upstream.sendall, headers)  # type: ignore[arg-type]
                keep = self._relay_response(
                    up_r, method, rule.after_bytes if rule and rule.kind == "drop" else None
                )
                if not keep:
                    return
        except (_Closed, _Dropped, OSError):
            return
        finally:
            if up_r is not None:
                up_r.close()
            if upstream is not None:
                upstream.close()

    def _send_failure(self, rule: _Rule) -> None:
        body = rule.body or (
            b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
            b"<Message>Injected by FaultProxy.</Message></Error>"
        )
        reason = {500: "Internal Server Error", 503: "Service Unavailable"}.get(rule.status, "Err")
        head = (
            f"HTTP/1.1 {rule.status} {reason}\r\nContent-Type: application/xml\r\n"
            f"x-ms-error-code: ServerBusy\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)

    def _relay_response(self, up: BinaryIO, method: str, drop_after: int | None) -> bool:
        """Relay one response; True if both connections may be reused."""
        budget = [drop_after]

        def send(data: bytes) -> None:
            left = budget[0]
            if left is not None and len(data) >= left:
                self.wfile.write(data[:left])
                self.wfile.flush()
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                raise _Dropped
            if left is not None:
                budget[0] = left - len(data)
            self.wfile.write(data)

        while True:
            head = _read_head(up)
            status = int(head[0].split(b" ")[1])
            if status >= 200 or status == 101:
                break  # interim 1xx answers are not relayed: the proxy sent its own 100
        headers = _headers(head)
        send(b"\r\n".join(head) + b"\r\n\r\n")
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            framed = True
        else:
            framed = _copy_body(up, send, headers)
            if not framed:
                while data := up.read(_CHUNK):
                    send(data)
        self.wfile.flush()
        if drop_after is not None:  # the whole response fitted in the budget: drop now
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            raise _Dropped
        return framed and headers.get("connection", "").lower() != "close"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of parallel connects
    allow_reuse_address = True
    block_on_close = False
    proxy: FaultProxy

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client (or the fault proxy) hanging up is normal here, not worth a traceback
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut every client connection (a stopped proxy must not keep relaying)."""
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, timeout: float = 60.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.timeout = timeout
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- faults --------------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 503, body: bytes = b"", match: Match | None = None
    ) -> None:
        """Answer the next ``n`` (matching) requests with ``status``, not forwarding them."""
        self._add(_Rule("fail", n, match, status=status, body=body))

    def drop_next(self, n: int = 1, after_bytes: int = 0, match: Match | None = None) -> None:
        """Forward the next ``n`` requests, then close after ``after_bytes`` of the response."""
        self._add(_Rule("drop", n, match, after_bytes=after_bytes))

    def delay_next(self, n: int = 1, seconds: float = 1.0, match: Match | None = None) -> None:
        """Hold the next ``n`` requests for ``seconds`` before forwarding them."""
        self._add(_Rule("delay", n, match, seconds=seconds))

    def reset(self) -> None:
        """Forget pending faults and the request log."""
        with self._lock:
            self._rules.clear()
            self.seen.clear()

    @property
    def pending(self) -> int:
        """Faults not yet applied."""
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def _add(self, rule: _Rule) -> None:
        if rule.remaining > 0:
            with self._lock:
                self._rules.append(rule)

    def _take(self, method: str, target: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and (rule.match is None or rule.match(method, target)):
                    rule.remaining -= 1
                    return rule
            return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        server = _Server()
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
