"""Images unpacked into each snapshotter: whiteouts as Docker applies them, safely."""

from __future__ import annotations

import dataclasses
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.api.snapshots import Kind
from cargohold.core.images.layers import LayerError
from cargohold.core.images.records import LAYER_LABEL
from cargohold.core.kernel.snapshot_mounts import mounted
from cargohold.core.snapshots.service import Snapshotter
from cargohold.core.testing.snapshotters import layer, remove_all, tree

from .builders import docker_archive

pytestmark = pytest.mark.root

BOTTOM = layer(
    ("dir", "etc"),
    ("file", "etc/os-release", b"v1"),
    ("file", "etc/motd", b"hello"),
    ("dir", "srv"),
    ("file", "srv/a", b"a"),
    ("dir", "srv/deep"),
    ("file", "srv/deep/b", b"b"),
    ("chardev", "null", 1, 3),
)
MIDDLE = layer(
    ("dir", "etc"),
    ("whiteout", "etc/motd"),
    ("file", "etc/os-release", b"v2"),
    ("dir", "srv", 0o750),
    ("opaque", "srv"),
    ("file", "srv/fresh", b"f"),
)
TOP = layer(("dir", "srv", 0o750), ("whiteout", "srv/fresh"), ("file", "added", b"new"))
EXPECTED = {
    "etc": "dir",
    "etc/os-release": "file:v2",
    "srv": "dir",
    "added": "file:new",
    "null": f"other:{stat.S_IFCHR:o}",
}

SNAPSHOTTERS = ["overlay", "copy", "btrfs"]


@pytest.fixture(params=SNAPSHOTTERS)
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose state directory suits the snapshotter under test."""
    state = tmp_path / "state"
    if request.param == "btrfs":
        state = request.getfixturevalue("btrfs_dir") / "state"
    runtime = Runtime(state)
    runtime.test_snapshotter = request.param  # type: ignore[attr-defined]
    try:
        yield runtime
    finally:
        remove_all(runtime.snapshotters.get(request.param))
        runtime.close()


def snap_of(rt: Runtime) -> Snapshotter:
    return rt.snapshotters.get(rt.test_snapshotter)  # type: ignore[attr-defined]


def test_layers_unpack_once_with_whiteouts_applied(rt: Runtime, tmp_path: Path) -> None:
    (image,) = rt.images.load(docker_archive(tmp_path / "i.tar", [BOTTOM, MIDDLE, TOP], ["w:1"]))
    snap = snap_of(rt)
    top = rt.images.unpacked_chain(image, snap)
    assert top == image.chain_ids()[-1]
    assert [i.key for i in snap.walk()] == sorted(image.chain_ids())
    target = tmp_path / "root"
    target.mkdir()
    with mounted(snap.prepare("ctr", top), target):
        assert tree(target) == EXPECTED
        assert stat.S_IMODE(os.stat(target / "srv").st_mode) == 0o750
        assert os.stat(target / "null").st_rdev == os.makedev(1, 3)
    # a second image on the same lower layers reuses their snapshots
    (other,) = rt.images.load(docker_archive(tmp_path / "o.tar", [BOTTOM, TOP], ["o:1"]))
    assert rt.images.unpacked_chain(image, snap) == top
    rt.images.unpacked_chain(other, snap)
    assert len(snap.walk()) == 3 + 1 + 1  # three layers, one new chain, the container


def test_overlay_layers_hold_native_whiteouts(runtime: Runtime, tmp_path: Path) -> None:
    (image,) = runtime.images.load(docker_archive(tmp_path / "i.tar", [BOTTOM, MIDDLE], ["w:1"]))
    snap = runtime.snapshotters.get("overlay")
    try:
        runtime.images.unpacked_chain(image, snap)
        layers = runtime.state_dir / "snapshots/overlay"
        upper = next(p for p in layers.iterdir() if (p / "srv/fresh").exists())
        motd = os.lstat(upper / "etc/motd")
        assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == 0
        assert os.getxattr(upper / "srv", "trusted.overlay.opaque") == b"y"
    finally:
        remove_all(snap)


def test_a_symlink_in_a_lower_layer_cannot_be_written_through(rt: Runtime, tmp_path: Path) -> None:
    victim = f"cargohold-escape-{uuid.uuid4().hex}"
    lower = layer(("symlink", "etc", "/etc"))
    upper = layer(("file", f"etc/{victim}", b"owned"))
    (image,) = rt.images.load(docker_archive(tmp_path / "i.tar", [lower, upper], ["evil:1"]))
    snap = snap_of(rt)
    with pytest.raises(LayerError, match="symlink"):
        rt.images.unpacked_chain(image, snap)
    assert not os.path.lexists(f"/etc/{victim}")
    # the failed layer left no snapshot; the good one below stays for reuse
    assert [(i.key, i.kind) for i in snap.walk()] == [(image.chain_ids()[0], Kind.COMMITTED)]


def test_removing_an_image_drops_its_unpacked_layers(rt: Runtime, tmp_path: Path) -> None:
    rt.images.load(docker_archive(tmp_path / "a.tar", [BOTTOM], ["a:1"]))
    (image,) = rt.images.load(docker_archive(tmp_path / "b.tar", [BOTTOM, TOP], ["b:1"]))
    snap = snap_of(rt)
    rt.images.unpacked_chain(image, snap)
    rt.images.remove("b:1")
    assert [i.key for i in snap.walk()] == [image.chain_ids()[0]]  # still needed by a:1
    rt.images.remove("a:1")
    assert snap.walk() == []


def test_an_unpack_interrupted_by_a_crash_is_redone(rt: Runtime, tmp_path: Path) -> None:
    (image,) = rt.images.load(docker_archive(tmp_path / "i.tar", [BOTTOM, TOP], ["c:1"]))
    snap = snap_of(rt)
    bottom = rt.images.unpacked_chain(lowest_layers(rt, "c:1", 1), snap)
    # a process died while unpacking the top layer: its active snapshot stays behind
    snap.prepare("unpack-died", bottom, labels={LAYER_LABEL: image.diff_ids[1]})
    top = rt.images.unpacked_chain(image, snap)
    assert sorted(i.key for i in snap.walk()) == sorted([bottom, top])


def lowest_layers(rt: Runtime, ref: str, layers: int):  # type: ignore[no-untyped-def]
    """``ref`` cut down to its lowest ``layers`` layers (to unpack part of it)."""
    image = rt.images.get(ref)
    config = {
        **image.config,
        "rootfs": {"type": "layers", "diff_ids": list(image.diff_ids[:layers])},
    }
    return dataclasses.replace(image, config=config)
