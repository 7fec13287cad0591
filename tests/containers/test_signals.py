"""A foreground ``cargohold run`` passes signals on to the container, as ``docker run`` does."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from cargohold.core import Runtime

from .conftest import CLI, IMAGE

pytestmark = pytest.mark.root

SCRIPT = "trap 'echo got-$1; exit 3' TERM; echo ready; while :; do sleep 0.1; done"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_container_and_its_code_is_returned(
    rt: Runtime, sig: signal.Signals
) -> None:
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(rt.state_dir)}
    handled = "TERM" if sig == signal.SIGTERM else "INT"
    script = SCRIPT.replace("TERM", handled).replace("$1", handled)
    proc = subprocess.Popen(
        [CLI, "run", "--rm", IMAGE, "sh", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (3, f"got-{handled}\n"), err
    assert rt.containers.list(all=True) == []  # --rm still cleaned up
