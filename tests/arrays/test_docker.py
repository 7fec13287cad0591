"""A block volume served to the real Docker engine: one container writes, another reads.

``cargohold serve loop`` (a unique plugin name, its own state directory)
listens on /run/docker/plugins, where the engine looks. The volume is an ext4
on a loop device, mounted for each container and unmounted after it.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from cargohold.plugins.docker.listen import SOCKET_DIR

from ..docker.conftest import ServeProcess, unique_name
from ..realdocker import DockerEngine
from .conftest import leaks, missing_tools_reason, release_under

pytestmark = pytest.mark.root

RUN = ("run", "--rm", "--network", "none")


def test_a_container_writes_a_block_volume_and_another_reads_it(
    docker_engine: DockerEngine, busybox_image: str
) -> None:
    reason = missing_tools_reason("mkfs.ext4", "e2fsck")
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="charr-d-", dir="/tmp"))
    proc = ServeProcess(["loop"], root / "state", SOCKET_DIR, unique_name("chtest-loop"))
    vol = f"chb-{secrets.token_hex(4)}"
    try:
        proc.start()
        docker = docker_engine.docker
        docker("volume", "create", "-d", proc.name, "-o", "size=64m", vol)
        data = root / "state" / "drivers" / "loop" / "volumes" / vol / "_data"
        written = docker(
            *RUN, "-v", f"{vol}:/data", busybox_image,
            "sh", "-c", "echo from-the-first > /data/note && cat /proc/mounts",
        )  # fmt: skip
        line = next(m for m in written.stdout.splitlines() if " /data " in m)
        assert line.split()[2] == "ext4", line
        assert leaks(data) == [], "unmounted when the first container ended"
        read = docker(*RUN, "-v", f"{vol}:/data:ro", busybox_image, "cat", "/data/note")
        assert read.stdout == "from-the-first\n"
        inspect = docker("volume", "inspect", "-f", "{{.Status.filesystem}}", vol)
        assert inspect.stdout.strip() == "ext4"
        docker("volume", "rm", vol)
    finally:
        docker_engine.docker("volume", "rm", "-f", vol, check=False)
        proc.stop()
        docker_engine.forget_plugins()
        left = leaks(root)
        release_under(root)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"the test leaked: {left}"
