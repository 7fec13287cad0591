"""Fixtures for container tests: a busybox image imported into a private runtime.

Every container a test makes is removed afterwards (killed if running), and
anything still mounted under the state directory is unmounted, even when the
test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.kernel import mounts

from ..realdocker import BUSYBOX_TOOLS

TOOLS = (*BUSYBOX_TOOLS, "id", "hostname", "mount", "ip", "env", "pwd", "ps")
CLI = str(Path(__file__).parents[2] / ".venv" / "bin" / "cargohold")
IMAGE = "bb:test"


def needs_busybox() -> None:
    """Root is checked by the ``root`` marker, which every module using these fixtures has."""
    if shutil.which("busybox") is None:
        pytest.skip("busybox is not installed (bash .ci/setup installs busybox-static)")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs tarball: static busybox, an /etc/passwd with root and app (1000)."""
    needs_busybox()
    root = tmp_path_factory.mktemp("bbroot")
    (root / "bin").mkdir()
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy(busybox, root / "bin" / "busybox")
    for tool in TOOLS:
        (root / "bin" / tool).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    (root / "seed").mkdir()
    (root / "seed" / "from-image").write_text("seeded\n")
    tar = tmp_path_factory.mktemp("bbtar") / "rootfs.tar"
    with tarfile.open(tar, "w") as out:
        for entry in sorted(root.iterdir()):
            out.add(entry, arcname=entry.name)
    return tar


@pytest.fixture
def rt(state_dir: Path, busybox_rootfs: Path) -> Iterator[Runtime]:
    """A runtime with ``bb:test`` (busybox) and ``bb:vol`` (with VOLUME /seed) imported."""
    with Runtime(state_dir) as runtime:
        runtime.images.import_rootfs(busybox_rootfs, IMAGE)
        runtime.images.import_rootfs(busybox_rootfs, "bb:vol", changes=["VOLUME /seed"])
        try:
            yield runtime
        finally:
            cleanup(runtime)


def cleanup(runtime: Runtime) -> None:
    """Remove every container (killing running ones) and unmount what is left."""
    service = runtime.containers
    for container in service.list(all=True):
        try:
            service.remove(container.id, force=True, volumes=True)
        except Exception as err:  # keep cleaning the rest
            print(f"cleanup of {container.id} failed: {err}")
    for entry in mounts.mounts_under(runtime.state_dir):
        mounts.umount(entry.target, detach=True)


def cli(state_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``cargohold`` command line on ``state_dir``."""
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(state_dir)}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
