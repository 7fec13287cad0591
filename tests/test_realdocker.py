from __future__ import annotations

from .realdocker import DockerEngine


def test_private_engine_runs_a_container(docker_engine: DockerEngine, busybox_image: str) -> None:
    result = docker_engine.docker("run", "--rm", "--network", "none", busybox_image, "echo", "hi")
    assert result.stdout.strip() == "hi"
