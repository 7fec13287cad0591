"""``commit --pause`` (default true) and ``--pause=false``, and ``run -h``, as docker has them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from cargohold.core import Runtime

from .conftest import IMAGE, cli

pytestmark = pytest.mark.root


def _started(rt: Runtime) -> str:
    service = rt.containers
    running = service.create(IMAGE, ["sh", "-c", "echo ready; while true; do sleep 0.1; done"])
    service.start(running.id)
    deadline = time.monotonic() + 10
    while b"ready" not in b"".join(d for _, d in service.logs(running.id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return running.id


def _spy_on_kill(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    real: Callable[[int, int], None] = os.kill

    def kill(pid: int, signum: int) -> None:
        sent.append(signum)
        real(pid, signum)

    monkeypatch.setattr(os, "kill", kill)
    return sent


@pytest.mark.parametrize("pause", [True, False])
def test_commit_pauses_a_running_container_unless_told_not_to(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, pause: bool
) -> None:
    container = _started(rt)
    sent = _spy_on_kill(monkeypatch)
    image = rt.containers.commit(container, f"paused:{int(pause)}", pause=pause)
    monkeypatch.undo()
    assert rt.images.get(f"paused:{int(pause)}").id == image.id
    assert (signal.SIGSTOP in sent) is pause
    assert rt.containers.get(container).state.running
    rt.containers.stop(container, timeout=0)


def test_commit_flags_as_docker_spells_them(rt: Runtime) -> None:
    container = _started(rt)
    try:
        for flags in (["--pause=false"], ["-p"], ["--pause=true"], []):
            done = cli(rt.state_dir, "commit", *flags, container, "flags:1")
            assert done.returncode == 0, (flags, done.stderr)
        bad = cli(rt.state_dir, "commit", "--pause=maybe", container)
        assert bad.returncode == 2 and 'invalid argument "maybe"' in bad.stderr
    finally:
        rt.containers.stop(container, timeout=0)
    shown = cli(rt.state_dir, "commit", "--help").stdout
    assert "a stopped container" not in shown
    assert "-p, --pause" in shown and "--pause=false" in " ".join(shown.split())


@pytest.mark.parametrize("command", ["run", "create"])
def test_dash_h_is_the_hostname(rt: Runtime, command: str) -> None:
    if command == "run":
        done = cli(rt.state_dir, "run", "--rm", "-h", "box1", IMAGE, "hostname")
        assert (done.returncode, done.stdout) == (0, "box1\n"), done.stderr
    else:
        done = cli(rt.state_dir, "create", "-h", "box2", IMAGE, "true")
        assert done.returncode == 0, done.stderr
        assert rt.containers.get(done.stdout.strip()).hostname == "box2"
        rt.containers.remove(done.stdout.strip())
    assert "-h, --hostname" in cli(rt.state_dir, command, "--help").stdout
