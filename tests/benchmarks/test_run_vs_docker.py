"""``cargohold run --rm IMAGE true`` against ``docker run --rm IMAGE true``, same run.

Both start from the command line, as a user would: the docker CLI talking to
a real dockerd 20.10 (containerd, runc, overlay2), and the ``cargohold``
command (namespaces, pivot_root, the image's layers in the default
snapshotter). The same busybox image is in both (``docker save``, then
``cargohold image load``); both use ``--network none``. Rounds alternate
between the two so the machine's drift hits both alike. The benchmark times
cargohold; ``extra_info`` holds both medians (ms) and the ratio
cargohold / docker (goal: below 1). Nothing is asserted about time.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..containers.conftest import CLI, needs_busybox
from ..realdocker import DockerEngine
from .paired import paired_medians

pytestmark = [pytest.mark.benchmark, pytest.mark.root]

ROUNDS = 15


def test_run_rm_true_vs_docker(
    benchmark: Any, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    needs_busybox()
    archive = tmp_path / "image.tar"
    docker_engine.docker("save", busybox_image, "-o", str(archive))
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(tmp_path / "state")}
    # as an installed cargohold runs: with cached bytecode (pip compiles it at install;
    # an environment that forbids writing it would time Python's compiler instead)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [CLI, "image", "load", "-i", str(archive)], env=env, check=True, capture_output=True
    )
    ours = [CLI, "run", "--rm", "--network", "none", busybox_image, "true"]
    theirs = ["docker", "run", "--rm", "--network", "none", busybox_image, "true"]
    try:
        # warm-up runs fill the page cache, unpacked layers and the engine's caches
        ours_ms, theirs_ms = paired_medians(
            benchmark, (ours, env), (theirs, docker_engine.env), rounds=ROUNDS, timeout=120
        )
    finally:
        leftover = subprocess.run([CLI, "ps", "-a", "-q"], env=env, capture_output=True, text=True)
        for container in leftover.stdout.split():
            subprocess.run([CLI, "rm", "-f", container], env=env, capture_output=True)
    info = {
        "cargohold_run_ms": round(ours_ms, 1),
        "docker_run_ms": round(theirs_ms, 1),
        "ratio_cargohold_to_docker": round(ours_ms / theirs_ms, 3),
    }
    benchmark.extra_info.update(info)
    print(f"\nrun --rm true: {info}")
    assert leftover.stdout == ""  # --rm left no container behind
