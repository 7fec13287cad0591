"""``docker run --rm IMAGE true``, the same docker CLI, against ``cargohold daemon`` and dockerd.

The daemon is warm (its runtime built, its supervisor launcher forked once);
dockerd 20.10 goes through containerd, a shim and runc. The same busybox
image is in both; both use ``--network none``. Rounds alternate so the
machine's drift hits both alike. ``extra_info`` holds both medians (ms) and
the ratio daemon / dockerd (goal: at most 0.3). Nothing is asserted about time.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..containers.conftest import CLI, needs_busybox
from ..engine_api.conftest import Daemon
from ..realdocker import DockerEngine
from .paired import paired_medians

pytestmark = [pytest.mark.benchmark, pytest.mark.root]

ROUNDS = 15


def test_docker_run_on_the_daemon_vs_dockerd(
    benchmark: Any, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    needs_busybox()
    archive = tmp_path / "image.tar"
    docker_engine.docker("save", busybox_image, "-o", str(archive))
    state = tmp_path / "state"
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(state)}
    subprocess.run(
        [CLI, "image", "load", "-i", str(archive)], env=env, check=True, capture_output=True
    )
    socket_dir = Path(f"/tmp/chbd-{os.getpid()}")  # unix socket paths are short
    socket_dir.mkdir(exist_ok=True)
    daemon = Daemon(socket_dir / "d.sock", state)
    daemon.start()
    argv = ["docker", "run", "--rm", "--network", "none", busybox_image, "true"]
    try:
        ours_ms, theirs_ms = paired_medians(
            benchmark, (argv, daemon.env), (argv, docker_engine.env), rounds=ROUNDS, timeout=120
        )
        leftover = daemon.docker("ps", "-aq").stdout
    finally:
        daemon.stop()
        socket_dir.joinpath("daemon.log").unlink(missing_ok=True)
        socket_dir.rmdir()
    info = {
        "cargohold_daemon_ms": round(ours_ms, 1),
        "dockerd_ms": round(theirs_ms, 1),
        "ratio_daemon_to_dockerd": round(ours_ms / theirs_ms, 3),
    }
    benchmark.extra_info.update(info)
    print(f"\ndocker run --rm true: {info}")
    assert leftover == ""  # --rm left no container behind
