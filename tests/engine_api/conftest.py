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

from ..containers.conftest import CLI, busybox_rootfs, cleanup, rt  # noqa: F401 - fixtures


@dataclass
class Daemon:
    socket: Path
    state_dir: Path

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
    sock = where / "cargohold.sock"
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(rt.state_dir)}
    log = open(where / "daemon.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [CLI, "daemon", "-H", f"unix://{sock}"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start: {(where / 'daemon.log').read_text()}")
            time.sleep(0.05)
        yield Daemon(sock, rt.state_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        assert not sock.exists(), "the daemon left its socket behind"
        shutil.rmtree(where, ignore_errors=True)
