"""A wire-compatible Azure Files server for tests, written from the File service REST reference.

No Azure Files emulator exists (Azurite has Blob, Queue and Table only), so the
cloud tests run the official ``azure-storage-file-share`` SDK, unchanged, against
this threaded standard-library server. Path-style URLs:
``http://127.0.0.1:PORT/{account}/{share}/{dir}/{file}``. SharedKey signatures
and SAS tokens are checked against the account key.

    with AzureFilesServer() as server:
        client = ShareServiceClient.from_connection_string(server.connection_string)

The operations are those the SDK's share, directory, file and lease clients use;
the request/response details each one needs live in `azure_files_ops`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlencode

from . import azure_files_ops as ops
from .azure_files_auth import AuthError, check_sas, check_shared_key, parse_query
from .azure_files_ops import Request, Response
from .azure_files_store import ApiError, Dir, File, Share
from .azure_files_xml import error_xml, http_date

#: The well-known development-storage account key (public, used by Azurite too).
DEFAULT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEFAULT_ACCOUNT = "devstoreaccount1"
API_VERSION = "2026-10-06"
# Bodies above this are refused before being read: no real request is larger than 4 MiB.
MAX_BODY = 64 * 1024 * 1024


Handler = Callable[[Request, "FileService"], Response]


class FileService:
    """The account's state and the request dispatcher (thread-safe: one lock for all)."""

    def __init__(self, account: str, key: str) -> None:
        self.account = account
        self.key = key
        self.lock = threading.RLock()
        self.shares: dict[str, Share] = {}
        self.requests = 0

    def reset(self) -> None:
        with self.lock:
            self.shares.clear()
            self.requests = 0

    def share(self, name: str) -> Share:
        share = self.shares.get(name)
        if share is None:
            raise ApiError(404, "ShareNotFound", "The specified share does not exist.")
        return share

    def handle(self, req: Request) -> Response:
        try:
            self._authorize(req)
            handler = self._route(req)
            with self.lock:
                self.requests += 1
                resp = handler(req, self)
        except AuthError as err:
            resp = _error(err.status, err.code, err.message)
            resp.headers["WWW-Authenticate"] = "SharedKey"
        except ApiError as err:
            resp = _error(err.status, err.code, err.message)
        resp.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        resp.headers.setdefault("x-ms-version", req.header("x-ms-version", API_VERSION))
        return resp

    def _authorize(self, req: Request) -> None:
        if "sig" in req.query:
            share = req.parts[0] if req.parts else None
            check_sas(
                req.query, self.account, self.key, share, "/".join(req.parts[1:]), _permission(req)
            )
            return
        if "authorization" not in req.headers:
            raise AuthError(
                401, "NoAuthenticationInformation", "Server failed to authenticate the request."
            )
        query = parse_query(req.raw_path.partition("?")[2])
        check_shared_key(
            req.method,
            req.raw_path.partition("?")[0],
            query,
            req.headers,
            self.account,
            self.key,
        )

    def _route(self, req: Request) -> Handler:
        restype = req.query.get("restype", "")
        comp = req.query.get("comp", "")
        m = req.method
        if not req.parts:
            if m == "GET" and comp == "list":
                return ops.list_shares
            raise ApiError(400, "UnsupportedQueryParameter", "Unsupported account operation.")
        if restype == "share":
            key = (m, comp)
            share_ops: dict[tuple[str, str], Handler] = {
                ("PUT", ""): ops.create_share,
                ("DELETE", ""): ops.delete_share,
                ("GET", ""): ops.share_properties,
                ("HEAD", ""): ops.share_properties,
                ("PUT", "metadata"): ops.set_share_metadata,
                ("PUT", "properties"): ops.set_share_properties,
                ("GET", "stats"): ops.share_stats,
                ("GET", "acl"): ops.get_share_acl,
                ("PUT", "acl"): ops.set_share_acl,
            }
            if len(req.parts) == 1 and key in share_ops:
                return share_ops[key]
        elif restype == "directory":
            dir_ops: dict[tuple[str, str], Handler] = {
                ("PUT", ""): ops.create_directory,
                ("DELETE", ""): ops.delete_directory,
                ("GET", ""): ops.directory_properties,
                ("HEAD", ""): ops.directory_properties,
                ("GET", "list"): ops.list_directory,
                ("PUT", "metadata"): ops.set_directory_metadata,
                ("PUT", "properties"): ops.set_directory_properties,
                ("PUT", "rename"): ops.rename,
            }
            if (m, comp) in dir_ops:
                return dir_ops[(m, comp)]
        elif len(req.parts) >= 2:
            file_ops: dict[tuple[str, str], Handler] = {
                ("PUT", ""): ops.create_file,
                ("DELETE", ""): ops.delete_file,
                ("GET", ""): ops.get_file,
                ("HEAD", ""): ops.file_properties,
                ("PUT", "range"): ops.put_range,
                ("GET", "rangelist"): ops.range_list,
                ("PUT", "properties"): ops.set_file_properties,
                ("PUT", "metadata"): ops.set_file_metadata,
                ("PUT", "lease"): ops.lease_file,
                ("PUT", "rename"): ops.rename,
            }
            if (m, comp) in file_ops:
                return file_ops[(m, comp)]
        raise ApiError(
            400,
            "UnsupportedHttpVerb" if not comp else "InvalidQueryParameterValue",
            f"Operation {m} restype={restype!r} comp={comp!r} is not supported here.",
        )


def _permission(req: Request) -> str:
    """The SAS permission letter an operation needs."""
    if req.method in ("GET", "HEAD"):
        return "l" if req.query.get("comp") == "list" else "r"
    if req.method == "DELETE":
        return "d"
    creating = "comp" not in req.query
    return "c" if creating else "w"


def _error(status: int, code: str, message: str) -> Response:
    return Response(
        status,
        {"x-ms-error-code": code, "Content-Type": "application/xml"},
        error_xml(code, message),
    )


def _admin(
    method: str, path: str, query: dict[str, str], body: bytes, svc: FileService
) -> Response:
    """Test-only controls, for a server in another process (unauthenticated, like moto's)."""
    if method == "POST" and path == "/_admin/reset":
        svc.reset()
        return Response(200)
    if method == "PUT" and path == "/_admin/seed":
        etag = seed(svc, query["share"], query["path"], body)
        return Response(200, {"ETag": etag})
    if method == "GET" and path == "/_admin/requests":
        return Response(200, {"Content-Type": "text/plain"}, str(svc.requests).encode())
    return _error(404, "ResourceNotFound", "No such admin operation.")


def seed(svc: FileService, share: str, path: str, data: bytes) -> str:
    """Put a file straight into the state (creating share and parents); its ETag."""
    with svc.lock:
        target = svc.shares.setdefault(share, Share(name=share))
        node: Dir = target.root
        *dirs, name = path.split("/")
        for part in dirs:
            child = node.get(part)
            if not isinstance(child, Dir):
                child = Dir(name=part, parent=node)
                node.put(child)
            node = child
        existing = node.get(name)
        file = existing if isinstance(existing, File) else File(name=name, parent=node)
        node.put(file)
        file.data = bytearray(data)
        file.written.remove(0, len(data) + 1)
        if data:
            file.written.add(0, len(data))
        file.touch()
        return file.etag


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops bursts of parallel connects
    block_on_close = False
    service: FileService
    endpoint: str

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, _RequestHandler)
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
        with self.conns_lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses connections
    # headers and body leave as separate writes: Nagle would hold the body for the ACK
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_DELETE = do_HEAD = do_POST = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(_error(413, "RequestBodyTooLarge", "The request body is too large."))
            return
        raw_path, _, raw_query = self.path.partition("?")
        service = self.server.service
        if raw_path.startswith("/_admin/"):
            self._send(_admin(self.command, raw_path, dict(parse_query(raw_query)), body, service))
            return
        # names cannot hold "/", so an encoded %2F (the SDK sends some) separates too
        segments = unquote(raw_path).split("/")[1:]
        while segments and segments[-1] == "":
            segments.pop()
        if not segments or segments[0] != service.account:
            self._send(_error(400, "InvalidUri", "The account is not part of the path."))
            return
        headers: dict[str, str] = {}
        metadata: dict[str, str] = {}
        for name, value in self.headers.items():
            low = name.lower()
            headers[low] = f"{headers[low]},{value}" if low in headers else value
            if low.startswith("x-ms-meta-") and len(low) > len("x-ms-meta-"):
                metadata[name[len("x-ms-meta-") :]] = value
        req = Request(
            method=self.command,
            raw_path=self.path,
            parts=segments[1:],
            query=dict(parse_query(raw_query)),
            headers=headers,
            metadata=metadata,
            body=body,
            endpoint=self.server.endpoint,
        )
        try:
            resp = service.handle(req)
        except Exception as exc:  # a server bug must show as a 500, not a hung client
            resp = _error(500, "InternalError", f"{type(exc).__name__}: {exc}")
        self._send(resp)

    def _send(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            if self.command != "HEAD" or "Content-Length" not in resp.headers:
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD" and resp.body:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def date_time_string(self, timestamp: float | None = None) -> str:
        return http_date(time.time() if timestamp is None else timestamp)


class AzureFilesServer:
    """An Azure Files account on a local port; a context manager.

    In-process by default: ``service.shares`` is the state, for tests that need to
    look behind the API (hold ``service.lock``). ``process=True`` runs it in a child
    Python instead, so that its request handling does not share the client's GIL
    (benchmarks); ``reset``, ``seed_file`` and ``request_count`` work in both modes.
    """

    def __init__(
        self,
        account: str = DEFAULT_ACCOUNT,
        key: str = DEFAULT_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        process: bool = False,
    ) -> None:
        self.account = account
        self.key = key
        self.host = host
        self._want_port = port
        self.process = process
        self.service = FileService(account, key)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._child_port = 0

    def start(self) -> AzureFilesServer:
        if self.process:
            return self._start_child()
        httpd = _HTTPServer((self.host, self._want_port))
        httpd.service = self.service
        self._httpd = httpd
        httpd.endpoint = f"{self.account_url}/"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"azure-files-{self.port}",
        )
        self._thread.start()
        return self

    def _start_child(self) -> AzureFilesServer:
        root = Path(__file__).resolve().parents[2]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
        )
        args = ["--host", self.host, "--port", str(self._want_port), "--account", self.account]
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tests.cloud.azure_files_server", *args],
            cwd=root,
            env=env | {"AZURE_FILES_SERVER_KEY": self.key},
            stdout=subprocess.PIPE,
        )
        assert self._child.stdout is not None
        line = self._child.stdout.readline()  # the child prints its port once listening
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the Azure Files server process did not start")
        self._child_port = int(line)
        return self

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _admin(self, method: str, path: str, body: bytes = b"") -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp

    def reset(self) -> None:
        """Drop every share."""
        if self.process:
            self._admin("POST", "/_admin/reset")
        else:
            self.service.reset()

    def seed_file(self, share: str, path: str, data: bytes = b"") -> str:
        """Put a file straight into the state (creating share and parents); its ETag.

        For setting up large trees fast, and for "someone else changed it" in tests.
        """
        if not self.process:
            return seed(self.service, share, path, data)
        query = urlencode({"share": share, "path": path})
        return str(self._admin("PUT", f"/_admin/seed?{query}", data).getheader("ETag"))

    def request_count(self) -> int:
        """Requests handled (authenticated and routed) since the last reset."""
        if not self.process:
            return self.service.requests
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("GET", "/_admin/requests")
        count = int(conn.getresponse().read())
        conn.close()
        return count

    @property
    def port(self) -> int:
        if self._child is not None:
            return self._child_port
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def account_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return self.connection_string_for(self.key)

    def connection_string_for(self, key: str) -> str:
        """A connection string with any key (a wrong one makes every request fail 403)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={key};"
            f"FileEndpoint={self.account_url};"
        )

    def __enter__(self) -> AzureFilesServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    """``python -m tests.cloud.azure_files_server``: serve until terminated; prints the port."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account", default=DEFAULT_ACCOUNT)
    args = parser.parse_args()
    key = os.environ.get("AZURE_FILES_SERVER_KEY", DEFAULT_KEY)  # not on the command line
    server = AzureFilesServer(args.account, key, args.host, args.port).start()
    print(server.port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
