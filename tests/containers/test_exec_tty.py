"""``cargohold exec`` and ``cargohold run -i -t``: setns into a running container, a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from cargohold.core import Runtime

from .conftest import CLI, IMAGE, cli

pytestmark = pytest.mark.root


def test_exec_joins_the_container(rt: Runtime) -> None:
    started = cli(
        rt.state_dir, "run", "-d", "--name", "target", "-e", "FROM=run", IMAGE, "sleep", "60"
    )
    assert started.returncode == 0, started.stderr
    done = cli(rt.state_dir, "exec", "target", "sh", "-c", "echo $FROM $$; hostname; exit 3")
    container = rt.containers.get("target")
    assert done.returncode == 3 and done.stdout == f"run {_pid_after(done)}\n{container.short_id}\n"
    # its own PID namespace: pid 1 is the container's sleep; its root: the container's
    assert cli(rt.state_dir, "exec", "target", "cat", "/proc/1/cmdline").stdout == "sleep\x0060\x00"
    assert cli(rt.state_dir, "exec", "target", "cat", "/seed/from-image").stdout == "seeded\n"
    as_app = cli(
        rt.state_dir, "exec", "-u", "app", "-w", "/seed", "target", "sh", "-c", "id -u; pwd"
    )
    assert as_app.stdout == "1000\n/seed\n"
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(rt.state_dir)}
    typed = subprocess.run(
        [CLI, "exec", "-i", "target", "sh", "-c", "cat; echo eof"],
        input="in\n", env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert typed.stdout == "in\neof\n"
    missing = cli(rt.state_dir, "exec", "target", "nosuch")
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert cli(rt.state_dir, "exec", "ghost", "true").returncode == 125
    cli(rt.state_dir, "stop", "-t", "0", "target")
    stopped = cli(rt.state_dir, "exec", "target", "true")
    assert stopped.returncode == 125 and "is not running" in stopped.stderr


def _pid_after(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout.split()[1]


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_run_it_passes_the_terminal_and_its_size(rt: Runtime, tmp_path: Path) -> None:
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(rt.state_dir)}
    pid, master = pty.fork()
    if pid == 0:
        os.execve(CLI, [CLI, "run", "-it", "--rm", IMAGE, "sh"], env)
    _set_size(master, 30, 100)
    output = b""

    def read_until(marker: bytes, seconds: float = 20) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while marker not in output and time.monotonic() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    output += os.read(master, 4096)
                except OSError:
                    return

    try:
        read_until(b"# ")
        os.write(master, b"busybox stty size; [ -t 0 ] && echo tty-$((1+1))\r")
        read_until(b"tty-2\r\n")
        _set_size(master, 40, 120)  # the kernel tells cargohold (SIGWINCH); it tells the container
        time.sleep(0.3)
        os.write(master, b"busybox stty size; exit 5\r")
        read_until(b"\xff", seconds=10)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert b"30 100\r\n" in output and b"tty-2\r\n" in output and b"40 120\r\n" in output
    assert os.waitstatus_to_exitcode(status) == 5
    assert rt.containers.list(all=True) == []
