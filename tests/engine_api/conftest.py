"""A ``cargohold daemon`` on a private unix socket, for the real docker CLI."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold.core import Runtime

from ..containers.conftest import CLI, IMAGE, busybox_rootfs, cleanup, rt  # noqa: F401 - fixtures
from ..realdocker import DockerEngine


@dataclass
class Daemon:
    socket: Path
    state_dir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "CARGOHOLD_STATE_DIR": str(self.state_dir)}
        with open(self.socket.parent / "daemon.log", "ab") as log:
            self.process = subprocess.Popen(
                [CLI, "daemon", "-H", f"unix://{self.socket}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_text = (self.socket.parent / "daemon.log").read_text()
                raise RuntimeError(f"daemon did not start: {log_text}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, as an init system stops it; the containers it started keep running."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return {**env, "DOCKER_HOST": f"unix://{self.socket}"}

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real docker CLI, pointed at this daemon."""
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = _UnixConnection(str(self.socket))
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


@pytest.fixture
def daemon(rt: Runtime) -> Iterator[Daemon]:  # noqa: F811 - the imported fixture
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    where = Path(tempfile.mkdtemp(prefix="chd-api-", dir="/tmp"))  # socket paths are short
    running = Daemon(where / "cargohold.sock", rt.state_dir)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        assert not running.socket.exists(), "the daemon left its socket behind"
        shutil.rmtree(where, ignore_errors=True)


@dataclass
class Engines:
    """The same docker CLI against cargohold's daemon and against the real dockerd."""

    ours: Daemon
    theirs: DockerEngine

    def both(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        results = []
        for env in (self.ours.env, self.theirs.env):
            results.append(
                subprocess.run(
                    ["docker", *args],
                    env=env,
                    input=input,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
            )
        return results[0], results[1]


@pytest.fixture
def engines(daemon: Daemon, docker_engine: DockerEngine, tmp_path: Path) -> Iterator[Engines]:
    """`daemon` and the real engine, with the same ``bb:test`` image (docker save, load)."""
    archive = tmp_path / "bb.tar"
    saved = subprocess.run(
        [CLI, "image", "save", "-o", str(archive), IMAGE],
        env={**os.environ, "CARGOHOLD_STATE_DIR": str(daemon.state_dir)},
        capture_output=True,
        text=True,
    )
    assert saved.returncode == 0, saved.stderr
    docker_engine.docker("load", "-i", str(archive))
    pair = Engines(daemon, docker_engine)
    try:
        yield pair
    finally:
        ids = docker_engine.docker("ps", "-aq", "--filter", "label=cargohold.test").stdout.split()
        if ids:
            docker_engine.docker("rm", "-f", "-v", *ids, check=False)
