"""A private, real Docker engine for the tests that need one.

Started once per test session on its own socket and data root (so it never
touches a system engine), stopped and cleaned up at the end, even on failure.
The engine still looks for volume plugins in the fixed system places
(/run/docker/plugins, /etc/docker/plugins, /usr/lib/docker/plugins): tests
that serve plugins use unique names and remove their sockets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BUSYBOX_TOOLS = ("sh", "ls", "cat", "echo", "mkdir", "touch", "rm", "sleep", "find", "true", "stat")


@dataclass
class DockerEngine:
    root: Path
    socket: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real docker CLI against this engine."""
        result = subprocess.run(
            ["docker", *args],
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def restart(self) -> None:
        """Stop and start the engine on the same data root (containers stop)."""
        self.stop()
        self.process = _start_dockerd(self.root, self.socket)

    def forget_plugins(self) -> None:
        """Restart the engine so that it forgets the volume plugins it has talked to.

        dockerd keeps every legacy plugin it ever used, and asks each one about
        any volume name it does not know, retrying for about 15 s when the
        plugin's socket is gone: a test that served a plugin to the session's
        engine calls this once the plugin has stopped, or every later
        ``docker run -v NEW:/x`` waits on the dead plugin.
        """
        self.restart()

    def crash_and_restart(self) -> None:
        """SIGKILL the engine, as a crash (no clean-up, containers' shims live on), and
        start it again on the same data root."""
        self.process.kill()
        self.process.wait()
        # Its containerd dies with it, but may stay a zombie nobody reaps here; the new
        # engine would take that pid for a live containerd, wait for it and never start.
        pid_file = self.root / "exec" / "containerd" / "containerd.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(pid_file.read_text())
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _alive(pid):
                pid_file.unlink()
        self.process = _start_dockerd(self.root, self.socket)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1]
    except FileNotFoundError:
        return False
    return state != "Z"


def dockerd_missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "the Docker engine needs root"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (bash .ci/setup installs docker.io)"
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    return None


def _start_dockerd(root: Path, socket: Path) -> subprocess.Popen[bytes]:
    log = open(root / "dockerd.log", "ab")  # noqa: SIM115 - lives as long as the engine
    process = subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=overlay2",
            f"--data-root={root}/data",
            f"--exec-root={root}/exec",
            f"--pidfile={root}/dockerd.pid",
            f"-H=unix://{socket}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited early:\n{(root / 'dockerd.log').read_text()}")
        probe = subprocess.run(["docker", "version"], env=env, capture_output=True)
        if probe.returncode == 0:
            return process
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"dockerd did not answer in 60 s:\n{(root / 'dockerd.log').read_text()}")


def start_engine() -> DockerEngine:
    # Unix socket paths are limited to 107 bytes: keep the root short.
    root = Path(tempfile.mkdtemp(prefix="chd-", dir="/tmp"))
    socket = root / "docker.sock"
    return DockerEngine(root, socket, _start_dockerd(root, socket))


def stop_engine(engine: DockerEngine) -> None:
    engine.stop()
    # dockerd leaves its overlay mounts behind if it was killed; unmount them.
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in reversed(mounts):
        target = line.split()[1]
        if target.startswith(str(engine.root)):
            subprocess.run(["umount", "-l", target], capture_output=True)
    shutil.rmtree(engine.root, ignore_errors=True)


def build_busybox_image(
    engine: DockerEngine, tag: str, tools: Sequence[str] = BUSYBOX_TOOLS
) -> None:
    """A one-layer image holding a static busybox: no registry needed."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox is not installed (bash .ci/setup installs busybox-static)")
    with tempfile.TemporaryDirectory() as rootfs:
        bin_dir = Path(rootfs, "bin")
        bin_dir.mkdir()
        shutil.copy(busybox, bin_dir / "busybox")
        for tool in tools:
            (bin_dir / tool).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", rootfs, "-c", "."], capture_output=True, check=True)
    result = subprocess.run(
        ["docker", "import", "-", tag], env=engine.env, input=tar.stdout, capture_output=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker import failed: {result.stderr.decode()}")
