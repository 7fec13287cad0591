"""The docker CLI's image commands against ``cargohold daemon``, beside dockerd."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cargohold.core import Runtime

from ..containers.conftest import IMAGE
from .conftest import Engines

pytestmark = pytest.mark.root


def test_images_tag_save_load_rmi_import(engines: Engines, rt: Runtime, tmp_path: Path) -> None:
    ours = engines.ours.docker

    def theirs(*args: str) -> subprocess.CompletedProcess[str]:
        return engines.theirs.docker(*args, check=False)

    image_id = rt.images.get(IMAGE).id
    listed = ours("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert f"{IMAGE} {image_id[7:19]}" in listed.stdout.splitlines()
    inspected = ours("image", "inspect", "--format", "{{.Id}}", IMAGE)
    assert inspected.stdout == f"{image_id}\n"
    # the same image loaded in both engines has the same id in both
    assert theirs("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout == f"{image_id}\n"
    assert ours("tag", IMAGE, "bb:second").returncode == 0
    assert rt.images.get("bb:second").id == image_id
    archive = tmp_path / "saved.tar"
    assert ours("save", "-o", str(archive), "bb:second").returncode == 0
    removed = ours("rmi", "bb:second")
    assert (removed.returncode, removed.stdout) == (0, "Untagged: bb:second\n")
    assert "Loaded image: bb:second\n" in ours("load", "-i", str(archive)).stdout
    assert "Loaded image: bb:second\n" in theirs("load", "-i", str(archive)).stdout
    missing = [d("rmi", "nosuch:1") for d in (ours, theirs)]
    assert [m.returncode for m in missing] == [1, 1]
    assert all("no such image" in m.stderr.lower() for m in missing)
    rootfs = tmp_path / "rootfs.tar"
    saved = subprocess.run(["tar", "-C", "/", "-cf", str(rootfs), "etc/hostname"], check=False)
    assert saved.returncode == 0
    imported = ours("import", str(rootfs), "plain:1")
    assert imported.returncode == 0 and imported.stdout.startswith("sha256:")
    assert rt.images.get("plain:1").id == imported.stdout.strip()
    in_use = ours("create", "--name", "holder", IMAGE, "true")
    assert in_use.returncode == 0
    refused = ours("rmi", IMAGE)  # a container holds it
    assert refused.returncode == 1 and IMAGE in rt.images.get(IMAGE).repo_tags
