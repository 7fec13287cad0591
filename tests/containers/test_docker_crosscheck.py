"""The same image, the same command: what lands in a named volume matches Docker's."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.api.container_mounts import parse_all

from ..realdocker import DockerEngine

pytestmark = pytest.mark.root

SCRIPT = """
cd /data
echo hello > greeting
chmod 640 greeting
mkdir -p a/b && echo deep > a/b/c && chmod 700 a
ln -s greeting link
id > ids
pwd > where
env | grep -v -e HOSTNAME -e PWD | sort > env
ls /proc/self/ns | sort > namespaces
cat /proc/self/status | grep -e '^Uid' -e '^Gid' > creds
echo $$ > pid
touch empty && chown 1234:5678 empty
printf 'exit %s\\n' "$(sh -c 'exit 7'; echo $?)" > codes
"""


def tree(root: Path) -> dict[str, tuple[str, int, int, int, str]]:
    """Every entry under ``root``: kind, mode, uid, gid and content (or link target)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, content = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, content = "dir", ""
            else:
                kind, content = "file", path.read_text()
            found[str(path.relative_to(root))] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                content,
            )
    return found


def test_named_volume_output_matches_docker(
    docker_engine: DockerEngine, busybox_image: str, rt: Runtime, tmp_path: Path
) -> None:
    archive = tmp_path / "image.tar"
    docker_engine.docker("save", busybox_image, "-o", str(archive))
    (loaded,) = rt.images.load(archive)
    assert busybox_image in loaded.repo_tags
    name = f"xcheck-{secrets.token_hex(4)}"
    docker_engine.docker("volume", "create", name)
    try:
        docker_engine.docker(
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{name}:/data",
            busybox_image,
            "sh",
            "-c",
            SCRIPT,
        )
        inspected = docker_engine.docker("volume", "inspect", "--format", "{{.Mountpoint}}", name)
        theirs = tree(Path(inspected.stdout.strip()))
    finally:
        docker_engine.docker("volume", "rm", "-f", name, check=False)
    container = rt.containers.create(
        busybox_image,
        ["sh", "-c", SCRIPT],
        mounts=parse_all(volumes=[f"{name}:/data"]),
        autoremove=True,
    )
    assert rt.containers.supervise(container.id) == 0
    ours = tree(Path(rt.volumes.get(name).mountpoint))
    assert ours == theirs
    assert ours["pid"][4] == "1\n" and ours["empty"][2:4] == (1234, 5678)


def test_volume_prefill_from_the_image_matches_docker(
    docker_engine: DockerEngine, busybox_image: str, rt: Runtime, tmp_path: Path
) -> None:
    """An image with ``VOLUME /seed`` and files there: both fill an empty volume alike."""
    builder = f"xbuild-{secrets.token_hex(4)}"
    tag = f"cargohold-prefill:{secrets.token_hex(4)}"
    setup = "mkdir -p /seed/sub && echo one > /seed/sub/f && chmod 751 /seed && chown 7:8 /seed/sub"
    docker_engine.docker(
        "run", "--name", builder, "--network", "none", busybox_image, "sh", "-c", setup
    )
    names = [f"xprefill-{secrets.token_hex(4)}" for _ in range(2)]
    try:
        docker_engine.docker("commit", "--change", "VOLUME /seed", builder, tag)
        archive = tmp_path / "prefill.tar"
        docker_engine.docker("save", tag, "-o", str(archive))
        rt.images.load(archive)
        docker_engine.docker(
            "run", "--rm", "--network", "none", "-v", f"{names[0]}:/seed", tag, "true"
        )
        where = docker_engine.docker("volume", "inspect", "--format", "{{.Mountpoint}}", names[0])
        theirs = tree(Path(where.stdout.strip()))
        theirs_root = Path(where.stdout.strip()).stat()
    finally:
        docker_engine.docker("rm", "-f", builder, check=False)
        docker_engine.docker("volume", "rm", "-f", names[0], check=False)
        docker_engine.docker("rmi", "-f", tag, check=False)
    container = rt.containers.create(
        tag, ["true"], mounts=parse_all(volumes=[f"{names[1]}:/seed"]), autoremove=True
    )
    assert rt.containers.supervise(container.id) == 0
    ours_path = Path(rt.volumes.get(names[1]).mountpoint)
    assert tree(ours_path) == theirs
    assert theirs["sub/f"][4] == "one\n" and theirs["sub"][2:4] == (7, 8)
    ours_root = ours_path.stat()
    assert (ours_root.st_mode, ours_root.st_uid) == (theirs_root.st_mode, theirs_root.st_uid)
