"""Pull, push and a cached rebuild, against the real Docker engine in the same run.

One real registry (distribution 2.8) on a loopback port serves both. The
image has four layers (busybox and three of 6 MiB of random bytes, so gzip
has real work). Rounds alternate between the two tools (`paired_medians`):

- pull: ``rmi`` then ``pull`` of the image the engine pushed, for both (each
  fetches and verifies the three data layers again; the engine keeps its
  busybox layer, which cargohold fetches too). Docker's pull also unpacks the
  layers into overlay2; cargohold stores them verified and unpacks on first
  run, so the ratio favours cargohold by that much;
- push: the registry's storage emptied, then ``push``, for both (each
  compresses and uploads every layer);
- rebuild: ``build -q`` of a Dockerfile already built (every step a cache hit),
  ``docker build`` with ``DOCKER_BUILDKIT=0`` (the classic builder).

``extra_info`` holds both medians (ms) and the ratio cargohold / docker.
Nothing is asserted about time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ..realdocker import DockerEngine
from ..registry.conftest import CARGOHOLD, registry
from ..registry.server import RegistryServer
from .paired import paired_medians

pytestmark = [pytest.mark.benchmark, pytest.mark.root]
__all__ = ["registry"]  # the fixture, used here

ROUNDS = 7
LAYER = "busybox dd if=/dev/urandom of=/layer{n} bs=1M count=6 2>/dev/null"


def _env(state: Path) -> dict[str, str]:
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(state)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: with cached bytecode
    return env


def _report(benchmark: Any, what: str, ours_ms: float, theirs_ms: float) -> None:
    info = {
        f"cargohold_{what}_ms": round(ours_ms, 1),
        f"docker_{what}_ms": round(theirs_ms, 1),
        "ratio_cargohold_to_docker": round(ours_ms / theirs_ms, 3),
    }
    benchmark.extra_info.update(info)
    print(f"\n{what}: {info}")


@pytest.fixture(scope="module")
def pushed_image(docker_engine: DockerEngine, busybox_image: str, registry: RegistryServer) -> Any:
    """A four-layer image the engine pushed: its name in the registry."""
    image = busybox_image
    made = []
    for n in range(3):
        name = f"cargohold-bench-layer{n}"
        docker_engine.docker("run", "--name", name, image, "sh", "-c", LAYER.format(n=n))
        image = f"cargohold-bench:{n}"
        docker_engine.docker("commit", name, image)
        docker_engine.docker("rm", name)
        made.append(image)
    remote = f"{registry.host}/bench/src:1"
    docker_engine.docker("tag", image, remote)
    docker_engine.docker("push", remote)
    # the engine keeps only the busybox layer: its pulls fetch the other three
    docker_engine.docker("rmi", remote, *reversed(made))
    try:
        yield remote
    finally:
        docker_engine.docker("rmi", "-f", remote, check=False)


def test_pull_vs_docker(
    benchmark: Any, docker_engine: DockerEngine, pushed_image: str, tmp_path: Path
) -> None:
    env = _env(tmp_path / "state")
    cli = str(CARGOHOLD)
    ours = ["sh", "-c", f"{cli} rmi {pushed_image} >/dev/null 2>&1; {cli} pull -q {pushed_image}"]
    theirs = [
        "sh",
        "-c",
        f"docker rmi {pushed_image} >/dev/null 2>&1; docker pull -q {pushed_image}",
    ]
    ours_ms, theirs_ms = paired_medians(
        benchmark, (ours, env), (theirs, docker_engine.env), rounds=ROUNDS, timeout=300
    )
    _report(benchmark, "pull", ours_ms, theirs_ms)


def test_push_vs_docker(
    benchmark: Any,
    docker_engine: DockerEngine,
    registry: RegistryServer,
    pushed_image: str,
    tmp_path: Path,
) -> None:
    env = _env(tmp_path / "state")
    cli = str(CARGOHOLD)
    subprocess.run([cli, "pull", "-q", pushed_image], env=env, check=True, capture_output=True)
    docker_engine.docker("pull", "-q", pushed_image)
    storage = registry.storage / "docker"
    ours_name = f"{registry.host}/bench/ours:1"
    theirs_name = f"{registry.host}/bench/theirs:1"
    subprocess.run([cli, "tag", pushed_image, ours_name], env=env, check=True)
    docker_engine.docker("tag", pushed_image, theirs_name)
    ours = ["sh", "-c", f"rm -rf {storage}; {cli} push -q {ours_name}"]
    theirs = ["sh", "-c", f"rm -rf {storage}; docker push -q {theirs_name} >/dev/null"]
    try:
        ours_ms, theirs_ms = paired_medians(
            benchmark, (ours, env), (theirs, docker_engine.env), rounds=ROUNDS, timeout=300
        )
    finally:
        docker_engine.docker("rmi", "-f", theirs_name, check=False)
        # later tests pull what the engine pushed: put it back
        docker_engine.docker("push", pushed_image)
    _report(benchmark, "push", ours_ms, theirs_ms)


def test_cached_rebuild_vs_docker_build(
    benchmark: Any, docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> None:
    env = _env(tmp_path / "state")
    cli = str(CARGOHOLD)
    archive = tmp_path / "base.tar"
    docker_engine.docker("save", "-o", str(archive), busybox_image)
    subprocess.run([cli, "load", "-i", str(archive)], env=env, check=True, capture_output=True)
    context = tmp_path / "context"
    (context / "src").mkdir(parents=True)
    for n in range(20):
        (context / "src" / f"file{n}").write_bytes(os.urandom(50_000))
    (context / "Dockerfile").write_text(
        f"FROM {busybox_image}\nENV APP=/app\nCOPY src /app/src\n"
        "RUN mkdir -p /app/out && ls /app/src > /app/out/list\n"
        'WORKDIR /app\nLABEL bench=rebuild\nCMD ["sh"]\n'
    )
    tag = "cargohold-bench-rebuild:1"
    docker_env = {**docker_engine.env, "DOCKER_BUILDKIT": "0"}
    ours = [cli, "build", "-q", "-t", tag, str(context)]
    theirs = ["docker", "build", "-q", "-t", tag, str(context)]
    try:
        ours_ms, theirs_ms = paired_medians(
            benchmark, (ours, env), (theirs, docker_env), rounds=10, timeout=300
        )
    finally:
        docker_engine.docker("rmi", "-f", tag, check=False)
        shutil.rmtree(context, ignore_errors=True)
    _report(benchmark, "cached_rebuild", ours_ms, theirs_ms)
