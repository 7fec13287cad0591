"""The fault-injecting proxy, observed by clients: the Azure Files SDK and plain http.client."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .azure_files_server import AzureFilesServer
from .azure_fixtures import running_azure_server
from .fault_proxy import FaultProxy

fs = pytest.importorskip("azure.storage.fileshare")
from azure.core.exceptions import HttpResponseError  # noqa: E402 - after the SDK check

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[AzureFilesServer]:
    yield from running_azure_server()


@pytest.fixture
def proxy(server: AzureFilesServer) -> Iterator[FaultProxy]:
    server.reset()
    with FaultProxy("127.0.0.1", server.port) as p:
        yield p


def client_via(
    server: AzureFilesServer, proxy: FaultProxy, retries: int = 3
) -> fs.ShareServiceClient:
    """An SDK client whose requests go through the proxy, with fast retries."""
    conn = server.connection_string.replace(server.account_url, f"{proxy.url}/{server.account}")
    return fs.ShareServiceClient.from_connection_string(
        conn,
        retry_policy=fs.LinearRetry(backoff=0.05, random_jitter_range=0, retry_total=retries),
    )


def test_transparent_when_no_faults(server: AzureFilesServer, proxy: FaultProxy) -> None:
    share = client_via(server, proxy).create_share("data")
    data = os.urandom(9 * MiB)
    share.get_file_client("f").upload_file(data)
    assert share.get_file_client("f").download_file().readall() == data
    assert proxy.seen and all(s.fault is None for s in proxy.seen)


def test_503s_are_retried_by_the_sdk(server: AzureFilesServer, proxy: FaultProxy) -> None:
    share = client_via(server, proxy).create_share("data")
    proxy.reset()
    proxy.fail_next(2, status=503)
    share.get_file_client("f").upload_file(b"hello")
    assert [s.fault for s in proxy.seen[:3]] == ["fail", "fail", None]
    assert share.get_file_client("f").download_file().readall() == b"hello"
    assert proxy.pending == 0


def test_persistent_500_reaches_the_caller(server: AzureFilesServer, proxy: FaultProxy) -> None:
    share = client_via(server, proxy, retries=2).create_share("data")
    proxy.fail_next(10, status=500)
    with pytest.raises(HttpResponseError) as err:
        share.get_share_properties()
    assert err.value.status_code == 500
    assert err.value.error_code == "ServerBusy"
    assert proxy.pending == 7  # the first try and two retries


def test_faults_can_target_one_kind_of_request(server: AzureFilesServer, proxy: FaultProxy) -> None:
    share = client_via(server, proxy, retries=0).create_share("data")
    proxy.fail_next(1, match=lambda method, target: "comp=range" in target)
    f = share.get_file_client("f")
    with pytest.raises(HttpResponseError):
        f.upload_file(b"abc")
    assert f.get_file_properties().size == 3  # the create went through, the range did not
    assert f.download_file().readall() == b"\0\0\0"


def test_dropped_download_surfaces_and_a_retry_gets_the_data(
    server: AzureFilesServer, proxy: FaultProxy
) -> None:
    # SDK 12.27 does not retry a body cut short: callers (the backend) must
    share = client_via(server, proxy).create_share("data")
    data = os.urandom(2 * MiB)
    f = share.get_file_client("f")
    f.upload_file(data)
    proxy.drop_next(1, after_bytes=64 * 1024, match=lambda m, _t: m == "GET")
    with pytest.raises(HttpResponseError, match="interrupted"):
        f.download_file().readall()
    assert [s.fault for s in proxy.seen if s.method == "GET"] == ["drop"]
    assert f.download_file().readall() == data


def test_dropped_response_after_the_write_happened(
    server: AzureFilesServer, proxy: FaultProxy
) -> None:
    # the server applies the range, the client never hears back and retries it
    share = client_via(server, proxy).create_share("data")
    f = share.get_file_client("f")
    f.create_file(4)
    proxy.drop_next(1, after_bytes=0, match=lambda _m, t: "comp=range" in t)
    f.upload_range(b"abcd", offset=0, length=4)
    assert f.download_file().readall() == b"abcd"
    assert sum(1 for s in proxy.seen if "comp=range" in s.target) == 2


def test_latency(server: AzureFilesServer, proxy: FaultProxy) -> None:
    share = client_via(server, proxy).create_share("data")
    proxy.delay_next(2, seconds=0.3)
    start = time.monotonic()
    share.get_share_properties()
    share.get_share_properties()
    assert time.monotonic() - start >= 0.6


def test_reset_forgets_pending_faults(server: AzureFilesServer, proxy: FaultProxy) -> None:
    proxy.fail_next(5)
    proxy.reset()
    assert proxy.pending == 0
    client_via(server, proxy, retries=0).create_share("data")


# --- framing that the Azure server does not use -----------------------------------------


class _Odd(BaseHTTPRequestHandler):
    """Chunked responses, unframed responses and 100-continue: what other servers send."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:  # no length: the body runs to the end of the connection
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True


@pytest.fixture
def odd_proxy() -> Iterator[FaultProxy]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with FaultProxy("127.0.0.1", httpd.server_address[1]) as p:
            yield p
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_chunked_unframed_and_expect_continue(odd_proxy: FaultProxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", odd_proxy.port, timeout=5)
    conn.request("GET", "/chunked")
    assert conn.getresponse().read() == b"hello chunked world"
    conn.request("PUT", "/x", body=b"abc", headers={"Expect": "100-continue"})
    assert conn.getresponse().read() == b"cba"  # same keep-alive connection
    conn.request("GET", "/unframed")
    assert conn.getresponse().read() == b"until close"
    conn.close()


def test_drop_cuts_the_response_short(odd_proxy: FaultProxy) -> None:
    odd_proxy.drop_next(1, after_bytes=10)
    conn = http.client.HTTPConnection("127.0.0.1", odd_proxy.port, timeout=5)
    conn.request("GET", "/chunked")
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.getresponse().read()
    conn.close()


def test_stop_cuts_open_connections(odd_proxy: FaultProxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", odd_proxy.port, timeout=5)
    conn.request("GET", "/chunked")
    conn.getresponse().read()
    odd_proxy.stop()
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/chunked")
        conn.getresponse().read()
