"""Cross-checks with the real Docker engine.

An image built by the engine (layers made with ``docker commit``: files
added, a lower layer's file deleted, a directory replaced) is saved, loaded
with ``cargohold image load`` and assembled by each snapshotter: the file
listing must equal ``docker export`` of a container of that image. And an
image cargohold saves must be one ``docker load`` accepts and runs.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.kernel.snapshot_mounts import mounted
from cargohold.core.testing.snapshotters import layer, remove_all

from ..realdocker import DockerEngine
from .builders import docker_archive

pytestmark = pytest.mark.root

CARGOHOLD = Path(sys.executable).parent / "cargohold"

# Files the engine adds to every container (its init layer and /.dockerenv), not the
# image's. The test image has no /etc of its own: the init layer makes it too.
ENGINE_ADDED = {
    ".dockerenv",
    "etc",
    "dev",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/mtab",
    "proc",
    "sys",
}

SECOND = (
    "mkdir -p /data/sub /opt /becomes-file && echo one > /data/a && echo two > /data/sub/b"
    " && echo keep > /opt/keep && echo gone > /opt/gone && echo x > /becomes-file/inner"
    " && busybox chmod 640 /opt/keep && busybox chown 1234:5678 /opt/keep"
    " && busybox ln -s /opt/keep /opt/link && busybox ln /data/a /data/a-hard"
    " && busybox chmod 4755 /data/sub/b"
)
THIRD = (
    "rm /opt/gone /bin/find && rm -rf /data && mkdir /data && echo new > /data/fresh"
    " && rm -rf /becomes-file && echo now-a-file > /becomes-file && busybox chmod 700 /opt"
)


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    target: str


def export_listing(tar_path: Path) -> dict[str, Entry]:
    listing: dict[str, Entry] = {}
    sizes: dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    for m in members:
        sizes[m.name.strip("/").removeprefix("./")] = m.size
    for m in members:
        name = m.name.strip("/").removeprefix("./")
        if not name or name in ENGINE_ADDED:
            continue
        if m.isdir():
            kind, size, target = "dir", 0, ""
        elif m.issym():
            kind, size, target = "link", 0, m.linkname
        elif m.islnk():  # a hard link is a regular file to a reader
            kind, size, target = "file", sizes[m.linkname.strip("/").removeprefix("./")], ""
        elif m.isreg():
            kind, size, target = "file", m.size, ""
        else:
            kind, size, target = f"type-{m.type!r}", 0, ""
        listing[name] = Entry(kind, m.mode & 0o7777, m.uid, m.gid, size, target)
    return listing


def tree_listing(root: Path) -> dict[str, Entry]:
    listing: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                entry = Entry("dir", mode, st.st_uid, st.st_gid, 0, "")
            elif stat.S_ISLNK(st.st_mode):
                entry = Entry("link", mode, st.st_uid, st.st_gid, 0, os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                entry = Entry("file", mode, st.st_uid, st.st_gid, st.st_size, "")
            else:
                entry = Entry(
                    f"other-{stat.S_IFMT(st.st_mode):o}", mode, st.st_uid, st.st_gid, 0, ""
                )
            listing[rel] = entry
    return listing


def without_links_mode(listing: dict[str, Entry]) -> dict[str, Entry]:
    # symlink permission bits mean nothing on Linux; tar writers disagree on them
    return {
        k: Entry(e.kind, 0 if e.kind == "link" else e.mode, e.uid, e.gid, e.size, e.target)
        for k, e in listing.items()
    }


@dataclass(frozen=True)
class EngineImage:
    archive: Path
    listing: dict[str, Entry]
    hello: str


@pytest.fixture(scope="module")
def engine_image(
    docker_engine: DockerEngine, busybox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineImage]:
    work = tmp_path_factory.mktemp("engine-image")
    tag = "cargohold-layers:test"
    made: list[str] = []
    try:
        parent = busybox_image
        for i, script in enumerate((SECOND, THIRD)):
            name = f"chlayers-{os.getpid()}-{i}"
            docker_engine.docker(
                "run", "--name", name, "--network", "none", parent, "sh", "-c", script
            )
            made.append(name)
            parent = f"cargohold-layers:step{i}"
            docker_engine.docker("commit", name, parent)
        docker_engine.docker("tag", parent, tag)
        docker_engine.docker("save", "-o", str(work / "image.tar"), tag)
        exporter = f"chexport-{os.getpid()}"
        docker_engine.docker("create", "--name", exporter, tag, "true")
        made.append(exporter)
        docker_engine.docker("export", "-o", str(work / "export.tar"), exporter)
        yield EngineImage(work / "image.tar", export_listing(work / "export.tar"), tag)
    finally:
        for name in made:
            docker_engine.docker("rm", "-f", name, check=False)
        for ref in (tag, "cargohold-layers:step0", "cargohold-layers:step1"):
            docker_engine.docker("rmi", ref, check=False)


def cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env["CARGOHOLD_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [str(CARGOHOLD), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("snapshotter", ["overlay", "copy", "btrfs"])
def test_engine_image_assembles_like_docker_export(
    engine_image: EngineImage, snapshotter: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    base = request.getfixturevalue("btrfs_dir") if snapshotter == "btrfs" else tmp_path
    state = base / "state"
    loaded = cli(state, "image", "load", "-i", str(engine_image.archive))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == f"Loaded image: {engine_image.hello}"
    with Runtime(state) as rt:
        snap = rt.snapshotters.get(snapshotter)
        try:
            image = rt.images.get(engine_image.hello)
            assert len(image.diff_ids) == 3
            top = rt.images.unpacked_chain(image, snap)
            target = tmp_path / "rootfs"
            target.mkdir()
            with mounted(snap.prepare("ctr", top), target):
                ours = tree_listing(target)
        finally:
            remove_all(snap)
    theirs = engine_image.listing
    assert "opt/gone" not in ours and "bin/find" not in ours  # deletions applied
    assert ours["becomes-file"].kind == "file"
    assert sorted(p for p in ours if p.startswith("data")) == ["data", "data/fresh"]
    assert without_links_mode(ours) == without_links_mode(theirs)


def test_docker_loads_and_runs_what_cargohold_saves(
    docker_engine: DockerEngine, runtime: Runtime, tmp_path: Path
) -> None:
    busybox = Path("/bin/busybox")
    base = layer(
        ("dir", "bin"),
        ("file", "bin/busybox", busybox.read_bytes(), 0o755),
        ("symlink", "bin/sh", "busybox"),
        ("symlink", "bin/cat", "busybox"),
        ("file", "greeting", b"from the base"),
    )
    top = layer(("whiteout", "greeting"), ("file", "hello", b"saved by cargohold"))
    runtime.images.load(
        docker_archive(tmp_path / "in.tar", [base, top], ["chsave:1"], {"Cmd": ["cat", "/hello"]})
    )
    tag = f"chsaved-{os.getpid()}:v1"
    runtime.images.tag("chsave:1", tag)
    out = cli(runtime.state_dir, "image", "save", "-o", str(tmp_path / "out.tar"), tag)
    assert out.returncode == 0, out.stderr
    try:
        loaded = docker_engine.docker("load", "-i", str(tmp_path / "out.tar"))
        assert f"Loaded image: {tag}" in loaded.stdout
        run = docker_engine.docker("run", "--rm", "--network", "none", tag)
        assert run.stdout == "saved by cargohold"
        gone = docker_engine.docker(
            "run", "--rm", "--network", "none", tag, "cat", "/greeting", check=False
        )
        assert gone.returncode != 0  # the whiteout deleted it
        inspected = docker_engine.docker("image", "inspect", "-f", "{{.Id}}", tag)
        assert inspected.stdout.strip() == runtime.images.get(tag).id
    finally:
        docker_engine.docker("rmi", "-f", tag, check=False)


# Lists the image's files (not what each engine adds: /proc, /sys, /dev, /etc,
# /.dockerenv) with type, mode, owner and, for files, a content hash.
LISTING = r"""
cd / && busybox find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./etc \
  -o -path ./.dockerenv \) -prune -o -print | busybox sort | while read -r p; do
  busybox stat -c '%n|%F|%a|%u|%g|%N' "$p"
  if [ -f "$p" ] && [ ! -L "$p" ]; then busybox md5sum < "$p"; fi
done
"""


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_the_same_command_lists_the_same_files_in_both(
    docker_engine: DockerEngine, engine_image: EngineImage, snapshotter: str, tmp_path: Path
) -> None:
    command = ("run", "--rm", "--network", "none", engine_image.hello, "sh", "-c", LISTING)
    theirs = docker_engine.docker(*command).stdout
    state = tmp_path / "state"
    assert cli(state, "image", "load", "-q", "-i", str(engine_image.archive)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env |= {"CARGOHOLD_STATE_DIR": str(state), "CARGOHOLD_SNAPSHOTTER": snapshotter}
    ours = subprocess.run(
        [str(CARGOHOLD), *command], capture_output=True, text=True, env=env, timeout=120
    )
    assert ours.returncode == 0, ours.stderr
    assert "./opt/keep|regular file|640|1234|5678" in theirs  # the listing says something
    assert "./opt/gone" not in theirs and "./becomes-file|regular file" in theirs
    assert ours.stdout == theirs
