"""The unchanged docker CLI runs containers on ``cargohold daemon`` as on dockerd.

Each command runs against both engines (the same image loaded in each); the
outputs and exit codes must match. ``--network none`` everywhere: the real
engine here has no bridge.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cargohold.core import Runtime

from ..containers.conftest import CLI, IMAGE
from .conftest import Engines

pytestmark = pytest.mark.root

RUN = ("run", "--network", "none", "--label", "cargohold.test=1")


def same(
    engines: Engines, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    ours, theirs = engines.both(*args, input=input)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    ), args
    return ours


def _on(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, timeout=60
        )

    return docker


def name() -> str:
    return f"c{secrets.token_hex(4)}"


def test_foreground_run_streams_and_exit_codes(engines: Engines) -> None:
    done = same(engines, *RUN, "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    killed = "sleep 10 & kill -9 $!; wait $!"
    assert same(engines, *RUN, "--rm", IMAGE, "sh", "-c", killed).returncode == 137
    assert same(engines, *RUN, "--rm", IMAGE, "true").returncode == 0
    lots = "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"
    assert same(engines, *RUN, "--rm", IMAGE, "sh", "-c", lots).stdout.count("\n") == 2000


def test_run_flags(engines: Engines) -> None:
    script = "echo $GREETING; pwd; id -u; touch /x 2>/dev/null || echo read-only; ls /t"
    args = ("-e", "GREETING=hi", "-w", "/work", "-u", "1000", "--read-only", "--tmpfs", "/t")
    done = same(engines, *RUN, "--rm", *args, IMAGE, "sh", "-c", script)
    assert done.stdout == "hi\n/work\n1000\nread-only\n"
    host = same(engines, "run", "--rm", "--network", "host", IMAGE, "sh", "-c", "echo ok")
    assert host.stdout == "ok\n"
    stdin = same(engines, *RUN, "--rm", "-i", IMAGE, "sh", "-c", "cat; echo done", input="typed\n")
    assert stdin.stdout == "typed\ndone\n"


def test_command_not_found_and_not_executable(engines: Engines) -> None:
    for command, code in (("nosuch", 127), ("/etc", 126)):
        ours, theirs = engines.both(*RUN, "--rm", IMAGE, command)
        assert ours.returncode == theirs.returncode == code
        assert ours.stdout == theirs.stdout == ""


def test_detached_logs_follow_stop(engines: Engines) -> None:
    loop = 'trap "echo bye; exit 7" TERM; i=0; while [ $i -lt 5 ]; do echo tick $i; i=$((i+1)); done; while true; do sleep 0.1; done'  # noqa: E501
    results = []
    container = name()
    for env in (engines.ours.env, engines.theirs.env):
        docker = _on(env)
        started = docker(*RUN, "-d", "--name", container, IMAGE, "sh", "-c", loop)
        assert started.returncode == 0, started.stderr
        assert len(started.stdout.strip()) == 64
        follow = subprocess.Popen(
            ["docker", "logs", "-f", container], env=env, stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 10
        while "tick 4" not in docker("logs", container).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        listed = docker("ps", "--format", "{{.Names}} {{.State}}", "--filter", f"name={container}")
        stopped = docker("stop", "-t", "5", container)
        followed, _ = follow.communicate(timeout=20)
        waited = docker("wait", container)
        status = docker("ps", "-a", "--format", "{{.Status}}", "--filter", f"name={container}")
        inspected = docker(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container
        )
        removed = docker("rm", container)
        results.append(
            (
                listed.stdout,
                stopped.stdout,
                followed,
                follow.returncode,
                waited.stdout,
                status.stdout.split(" ")[0:2],
                inspected.stdout,
                removed.returncode,
            )
        )
    ours, theirs = results
    assert ours[1:] == theirs[1:] and ours[0].endswith(" running\n")
    assert ours[2] == "".join(f"tick {i}\n" for i in range(5)) + "bye\n" and ours[4] == "7\n"


def test_create_start_restart_kill_rm(engines: Engines) -> None:
    container = name()
    script = 'trap "exit 3" HUP; while true; do sleep 0.1; done'
    ours, theirs = engines.both(
        "create", "--network", "none", "--name", container, IMAGE, "sh", "-c", script
    )
    assert ours.returncode == theirs.returncode == 0
    assert same(engines, "start", container).stdout == f"{container}\n"
    assert same(engines, "restart", "-t", "1", container).stdout == f"{container}\n"
    assert same(engines, "kill", "-s", "HUP", container).stdout == f"{container}\n"
    assert same(engines, "wait", container).stdout == "3\n"
    again = engines.both("kill", container)  # not running: an error on both
    assert again[0].returncode == again[1].returncode == 1
    same(engines, "start", container)
    refused = engines.both("rm", container)  # running
    assert refused[0].returncode == refused[1].returncode == 1
    assert same(engines, "rm", "-f", "-v", container).stdout == f"{container}\n"
    missing = engines.both("rm", container)
    assert missing[0].returncode == missing[1].returncode == 1
    assert "no such container" in missing[0].stderr.lower()
    assert "no such container" in missing[1].stderr.lower()


def test_exec(engines: Engines) -> None:
    container = name()
    started = engines.both(*RUN, "-d", "--name", container, IMAGE, "sleep", "100")
    assert started[0].returncode == started[1].returncode == 0
    try:
        done = same(engines, "exec", container, "sh", "-c", "echo in; echo er >&2; exit 5")
        assert (done.returncode, done.stdout, done.stderr) == (5, "in\n", "er\n")
        typed = same(engines, "exec", "-i", container, "sh", "-c", "cat; echo end", input="hello\n")
        assert typed.stdout == "hello\nend\n"
        as_user = same(
            engines,
            "exec",
            "-u",
            "1000",
            "-w",
            "/",
            "-e",
            "A=b",
            container,
            "sh",
            "-c",
            "id -u; pwd; echo $A",
        )
        assert as_user.stdout == "1000\n/\nb\n"
        same(engines, "exec", container, "true")
        # the process is in the container's PID namespace: pid 1 is the container's sleep
        assert (
            same(engines, "exec", container, "cat", "/proc/1/cmdline").stdout == "sleep\x00100\x00"
        )
        # dockerd 20.10's runc says 126 for a missing command, newer ones (and cargohold) 127
        ours, theirs = engines.both("exec", container, "nosuch")
        assert ours.returncode == 127 and theirs.returncode in (126, 127)
        assert (
            "executable file not found" in ours.stdout  # dockerd writes it on the stream
            and "executable file not found" in theirs.stdout
        )
    finally:
        engines.both("rm", "-f", container)


def test_commit(engines: Engines, rt: Runtime) -> None:
    container = name()
    engines.both(*RUN, "--name", container, IMAGE, "sh", "-c", "echo made > /made; rm /bin/ls")
    repo = f"committed{secrets.token_hex(3)}:1"
    ours, theirs = engines.both("commit", "-c", "CMD cat /made", container, repo)
    assert ours.returncode == theirs.returncode == 0 and ours.stdout.startswith("sha256:")
    done = same(engines, *RUN, "--rm", repo)
    assert done.stdout == "made\n"
    gone = same(engines, *RUN, "--rm", repo, "sh", "-c", "[ -e /bin/ls ] || echo gone")
    assert gone.stdout == "gone\n"
    engines.both("rm", container)
    assert rt.images.get(repo).id == ours.stdout.strip()


def test_volumes_of_a_driver_and_of_a_docker_plugin(
    engines: Engines, rt: Runtime, tmp_path: Path
) -> None:
    """``-v`` with a cargohold driver, and with a Docker plugin that ``cargohold serve`` serves."""
    plugin = f"chv{secrets.token_hex(3)}"
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(tmp_path / "plugin-state")}
    served = subprocess.Popen(
        [CLI, "serve", "local", "--name", plugin],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket_path = Path("/run/docker/plugins") / f"{plugin}.sock"
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            assert served.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        write = "echo kept > /d/f; echo plugin > /p/f"
        read = "cat /d/f /p/f"
        for side, docker in (("ours", _on(engines.ours.env)), ("theirs", _on(engines.theirs.env))):
            volumes = ("-v", "named:/d", "-v", f"pv-{side}:/p", "--volume-driver", plugin)
            wrote = docker(*RUN, "--rm", *volumes, IMAGE, "sh", "-c", write)
            assert wrote.returncode == 0, wrote.stderr
            mount = f"type=volume,source=pv-{side},target=/p,volume-driver={plugin}"
            again = docker(
                *RUN, "--rm", "-v", "named:/d", "--mount", mount, IMAGE, "sh", "-c", read
            )
            assert (again.returncode, again.stdout) == (0, "kept\nplugin\n"), again.stderr
            # (no `volume ls`: it activates every plugin socket, and a dead one hangs dockerd)
            driver = docker("volume", "inspect", "--format", "{{.Driver}}", f"pv-{side}")
            assert driver.stdout == f"{plugin}\n"
            assert docker("volume", "rm", "named", f"pv-{side}").returncode == 0
        assert rt.volumes.list() == []
    finally:
        served.terminate()
        served.wait(timeout=20)


def test_concurrent_runs(engines: Engines, rt: Runtime) -> None:
    """One daemon serves several docker CLIs at once; each gets its own output and code."""
    runs = [
        subprocess.Popen(
            ["docker", *RUN, "--rm", IMAGE, "sh", "-c", f"echo run {i}; exit {i}"],
            env=engines.ours.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    results = [(run.communicate(timeout=60)[0], run.returncode) for run in runs]
    assert results == [(f"run {i}\n", i) for i in range(6)]
    assert rt.containers.list(all=True) == []
