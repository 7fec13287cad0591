"""A base image for builds: a static busybox, in a cargohold state directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ..realdocker import BUSYBOX_TOOLS
from ..registry.conftest import cargohold, ok

BASE = "build-base:1"


def busybox_rootfs_tar(directory: Path) -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (bash .ci/setup installs busybox-static)")
    rootfs = directory / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/:/bin/sh\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\napps:x:5678:\n")
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for tool in (*BUSYBOX_TOOLS, "sort", "chmod", "chown", "ln", "mv", "cp", "printenv"):
        if not (rootfs / "bin" / tool).exists():
            (rootfs / "bin" / tool).symlink_to("busybox")
    tar = directory / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


@pytest.fixture
def base_state(tmp_path: Path) -> Path:
    """A state directory holding BASE (busybox, CMD sh)."""
    state = tmp_path / "state"
    tar = busybox_rootfs_tar(tmp_path)
    ok(cargohold("import", str(tar), BASE, "-c", 'CMD ["sh"]', state=state))
    return state
