"""Fixtures for the plugin server's tests: real servers on real sockets, always cleaned up.

Servers listen in short private directories under /tmp (unix socket paths are
limited to 107 bytes), except where the real engine must find them: there
they use /run/docker/plugins with a unique name, and teardown kills the
process and removes what it left.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from cargohold.core import Runtime, Unavailable
from cargohold.plugins.docker.health import UnixHTTPConnection
from cargohold.plugins.docker.server import ListenOn, PluginServer

CARGOHOLD = str(Path(sys.executable).with_name("cargohold"))
ENGINE_HEADERS = {"Accept": "application/vnd.docker.plugins.v1.2+json"}


def cargohold_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The cargohold command line on ``state_dir``, as an operator runs it."""
    return subprocess.run(
        [CARGOHOLD, "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def unique_name(prefix: str = "chtest") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class PluginClient:
    """Speaks the protocol as the engine does: POST, no Content-Type, keep-alive."""

    def __init__(self, socket_path: Path, timeout: float = 30) -> None:
        self.socket_path = socket_path
        self.conn = UnixHTTPConnection(str(socket_path), timeout)

    def raw(self, path: str, body: bytes = b"", method: str = "POST") -> tuple[int, dict[str, Any]]:
        try:
            self.conn.request(method, path, body=body, headers=ENGINE_HEADERS)
            response = self.conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # the next call reconnects
            raise
        if response.will_close:
            self.conn.close()
        return response.status, json.loads(data) if data else {}

    def call(self, method: str, body: Any = None) -> dict[str, Any]:
        """A protocol call that must succeed (200, empty Err)."""
        status, answer = self.raw(f"/{method}", b"" if body is None else json.dumps(body).encode())
        assert status == 200 and not answer.get("Err"), f"{method} {body}: {status} {answer}"
        return answer

    def fails(self, method: str, body: Any) -> tuple[int, str]:
        """A protocol call that must fail: its status and its Err."""
        status, answer = self.raw(f"/{method}", json.dumps(body).encode())
        assert status != 200 or answer.get("Err"), f"{method} {body} succeeded: {answer}"
        assert answer.get("Err"), f"{method} {body}: no Err in {status} {answer}"
        return status, str(answer["Err"])

    def status(self) -> dict[str, Any]:
        code, report = self.raw("/cargohold/status", method="GET")
        assert code == 200
        return report

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A private directory with a short path (for unix sockets), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="chp-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Served:
    runtime: Runtime
    server: PluginServer
    client: PluginClient
    socket_dir: Path

    @property
    def driver_root(self) -> Path:
        return self.runtime.state_dir / "drivers" / self.server.driver


@contextlib.contextmanager
def serving(
    runtime: Runtime, driver: str, socket_dir: Path
) -> Iterator[tuple[PluginServer, PluginClient]]:
    """``driver`` served in this process on a real unix socket, and a client."""
    server = PluginServer(runtime.volumes, driver, unique_name(), ListenOn(socket_dir=socket_dir))
    server.start()
    try:
        assert server.socket_path is not None
        client = PluginClient(server.socket_path)
        try:
            yield server, client
        finally:
            client.close()
    finally:
        server.stop()


@pytest.fixture
def served(short_dir: Path) -> Iterator[Served]:
    """The local driver served in this process."""
    runtime = Runtime(short_dir / "state")
    try:
        with serving(runtime, "local", short_dir / "plugins") as (server, client):
            yield Served(runtime, server, client, short_dir / "plugins")
    finally:
        runtime.close()


@dataclass
class ServeProcess:
    """``cargohold serve`` as a real subprocess; `stop` kills it by its pid."""

    args: list[str]
    state_dir: Path
    socket_dir: Path
    name: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    log: Path | None = None

    @property
    def socket(self) -> Path:
        return self.socket_dir / f"{self.name}.sock"

    def start(self, wait_for: Path | None = None) -> None:
        self.log = self.state_dir.parent / f"serve-{self.name}.log"
        env = {**os.environ, "CARGOHOLD_STATE_DIR": str(self.state_dir), **self.env}
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [
                    CARGOHOLD,
                    "serve",
                    *self.args,
                    "--name",
                    self.name,
                    "--socket-dir",
                    str(self.socket_dir),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        wait_until_answers(wait_for or self.socket, self)

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=20)

    def kill(self) -> None:
        """SIGKILL, as a crash: the socket stays behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)

    def output(self) -> str:
        return self.log.read_text() if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()


def wait_until_answers(path: Path, proc: ServeProcess, timeout: float = 30) -> None:
    """Until the socket at ``path`` answers (or, for a spec file, until it is written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.process is not None
        if proc.process.poll() is not None:
            raise AssertionError(f"cargohold serve exited early:\n{proc.output()}")
        if path.suffix in (".json", ".spec") and path.exists():
            return  # written only once the server listens
        if path.exists():
            client = PluginClient(path, timeout=5)
            try:
                client.call("Plugin.Activate")
                return
            except (OSError, AssertionError, Unavailable):
                pass  # not yet: a stale socket from a crash, say
            finally:
                client.close()
        time.sleep(0.05)
    raise AssertionError(f"cargohold serve did not answer on {path}:\n{proc.output()}")


class StartServe(Protocol):
    def __call__(
        self,
        *args: str,
        name: str | None = None,
        state_dir: Path | None = None,
        socket_dir: Path | None = None,
        wait_for: Path | None = None,
    ) -> ServeProcess: ...


@pytest.fixture
def start_serve(short_dir: Path) -> Iterator[StartServe]:
    """Starts ``cargohold serve ARGS`` processes; each is stopped and its socket removed."""
    made: list[ServeProcess] = []

    def start(
        *args: str,
        name: str | None = None,
        state_dir: Path | None = None,
        socket_dir: Path | None = None,
        wait_for: Path | None = None,
    ) -> ServeProcess:
        proc = ServeProcess(
            list(args),
            state_dir or short_dir / "state",
            socket_dir or short_dir / "plugins",
            name or unique_name(),
        )
        made.append(proc)
        proc.start(wait_for)
        return proc

    try:
        yield start
    finally:
        for proc in made:
            proc.stop()
