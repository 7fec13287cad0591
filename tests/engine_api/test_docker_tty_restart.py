"""``docker run -it`` through a terminal a test types into, and a daemon restart mid-run."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from cargohold.core import Runtime

from ..containers.conftest import IMAGE
from .conftest import Daemon, Engines

pytestmark = pytest.mark.root


def through_pty(env: dict[str, str], args: list[str], typed: bytes) -> tuple[bytes, int]:
    """Run the docker CLI on a new terminal (80x24), type ``typed`` once the shell is up."""
    pid, master = pty.fork()
    if pid == 0:  # the child: the terminal's session leader
        os.execvpe("docker", ["docker", *args], env)
    output = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in output):
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    output += os.read(master, 4096)
                except OSError:  # EIO: the CLI has gone
                    return

    try:
        read_for(20, until=b"# ")  # the prompt
        os.write(master, typed)
        read_for(20, until=b"\xff")  # everything, until the CLI closes the terminal
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    return output, os.waitstatus_to_exitcode(status)


def test_interactive_tty_session_matches_docker(engines: Engines) -> None:
    args = ["run", "-it", "--rm", "--network", "none", IMAGE, "sh"]
    typed = b"echo typed $((6*7)); [ -t 0 ] && echo on-a-tty; exit 4\r"
    ours = through_pty(engines.ours.env, args, typed)
    theirs = through_pty(engines.theirs.env, args, typed)
    assert ours == theirs
    output, code = ours
    assert code == 4 and b"typed 42\r\n" in output and b"on-a-tty\r\n" in output


def test_exec_tty(engines: Engines) -> None:
    for env in (engines.ours.env, engines.theirs.env):
        started = subprocess.run(
            ["docker", "run", "-d", "--network", "none", "--name", "ttyexec", IMAGE, "sleep", "60"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert started.returncode == 0, started.stderr
    try:
        results = [
            through_pty(env, ["exec", "-it", "ttyexec", "sh"], b"echo in-exec; exit 3\r")
            for env in (engines.ours.env, engines.theirs.env)
        ]
        assert results[0] == results[1] and results[0][1] == 3
        assert b"in-exec\r\n" in results[0][0]
    finally:
        for env in (engines.ours.env, engines.theirs.env):
            subprocess.run(["docker", "rm", "-f", "ttyexec"], env=env, capture_output=True)


def test_daemon_restart_finds_running_containers(daemon: Daemon, rt: Runtime) -> None:
    script = 'trap "echo stopping; exit 9" TERM; echo up; while true; do sleep 0.1; done'
    started = daemon.docker("run", "-d", "--name", "keeper", IMAGE, "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    container_id = started.stdout.strip()
    pid = rt.containers.get(container_id).state.pid
    daemon.stop()  # SIGTERM: stop serving, leave the containers
    assert not daemon.socket.exists()
    assert rt.containers.get(container_id).state.running
    os.kill(pid, 0)  # still there
    daemon.start()
    listed = daemon.docker("ps", "--format", "{{.ID}} {{.Names}} {{.State}}")
    assert listed.stdout == f"{container_id[:12]} keeper running\n"
    assert daemon.docker("stop", "keeper").stdout == "keeper\n"
    logs = daemon.docker("logs", "keeper")
    assert logs.stdout == "up\nstopping\n"
    inspected = daemon.docker("inspect", "--format", "{{.State.ExitCode}}", "keeper")
    assert inspected.stdout == "9\n"
    assert daemon.docker("rm", "keeper").returncode == 0
    assert rt.containers.list(all=True) == []
