"""Through the real Docker engine: ``docker run -v share:/data`` lands files in the bucket.

One ``cargohold serve <driver>`` per service, on /run/docker/plugins under a
unique plugin name, with its own state directory; credentials reach it as
``env:`` references in the volume's options, never as values.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.plugins.docker.listen import SOCKET_DIR

from ..docker.conftest import ServeProcess, unique_name
from ..realdocker import DockerEngine
from .conftest import S3_SECRET, Remote


@pytest.fixture
def served(remote: Remote, docker_engine: DockerEngine) -> Iterator[ServeProcess]:
    root = Path(tempfile.mkdtemp(prefix="chcd-", dir="/tmp"))
    serve = ServeProcess([remote.driver], root / "state", SOCKET_DIR, unique_name("chcloud"))
    (root / "state").mkdir()
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()
        docker_engine.forget_plugins()
        shutil.rmtree(root, ignore_errors=True)


def test_docker_run_writes_a_file_that_lands_in_the_bucket(
    remote: Remote,
    prefix: str,
    served: ServeProcess,
    docker_engine: DockerEngine,
    busybox_image: str,
) -> None:
    volume = f"chcv-{secrets.token_hex(4)}"
    options = [
        arg for key, value in remote.opts(prefix).items() for arg in ("-o", f"{key}={value}")
    ]
    docker = docker_engine.docker
    docker("volume", "create", "-d", served.name, *options, volume)
    try:
        remote.put(f"{prefix}/from-the-cloud.txt", b"fetched at mount\n")
        script = (
            "cat /data/from-the-cloud.txt > /data/copy.txt; echo written by docker > /data/out.txt"
        )
        docker(
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{volume}:/data",
            busybox_image,
            "sh",
            "-c",
            script,
        )
        deadline = time.monotonic() + 60
        while remote.get(f"{prefix}/out.txt") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert remote.get(f"{prefix}/out.txt") == b"written by docker\n"
        assert remote.get(f"{prefix}/copy.txt") == b"fetched at mount\n"
        seen = json.loads(docker("volume", "inspect", volume).stdout)[0]
        assert seen["Scope"] == "global"
        assert seen["Status"]["remote"].rstrip("/").endswith(f"/{prefix}")
        assert S3_SECRET not in json.dumps(seen)
    finally:
        docker("volume", "rm", "-f", volume, check=False)
