"""Choosing a snapshotter: probing the host, the override, third-party plugins."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import pytest

from cargohold.core import Runtime, hookimpl
from cargohold.core.api.errors import NotFound, NotSupported
from cargohold.core.kernel import mounts
from cargohold.core.snapshots.registry import SNAPSHOTTER_ENV, default_snapshotter
from cargohold.core.testing.snapshotters import layer, remove_all
from cargohold.drivers.snapshotters.copy import CopySnapshotter

from ..images.builders import docker_archive

pytestmark = pytest.mark.root


def test_the_probe_prefers_btrfs_then_overlay(
    tmp_path: Path, btrfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SNAPSHOTTER_ENV, raising=False)
    assert default_snapshotter(tmp_path / "state") == "overlay"  # ext4 here
    assert default_snapshotter(btrfs_dir / "state") == "btrfs"
    monkeypatch.setenv(SNAPSHOTTER_ENV, "copy")
    assert default_snapshotter(btrfs_dir / "state") == "copy"
    with Runtime(tmp_path / "state") as rt:
        assert rt.snapshotters.default().name == "copy"


def test_unusable_and_unknown_snapshotters_say_why(runtime: Runtime) -> None:
    with pytest.raises(NotSupported, match="not on a btrfs filesystem"):
        runtime.snapshotters.get("btrfs")
    with pytest.raises(NotFound, match=r"no snapshotter named .zfs.; installed: .*overlay"):
        runtime.snapshotters.get("zfs")


class MirrorSnapshotter(CopySnapshotter):
    """A third party's snapshotter: here, the copy one under another name."""

    name: ClassVar[str] = "mirror"  # type: ignore[misc]


class MirrorPlugin:
    @hookimpl
    def cargohold_snapshotters(self) -> list[type[CopySnapshotter]]:
        return [MirrorSnapshotter]


def test_a_plugin_adds_a_snapshotter_images_unpack_into(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "a.tar", [layer(("file", "hello", b"hi"))], ["p:1"])
    with Runtime(tmp_path / "state", plugins=[MirrorPlugin()]) as rt:
        assert "mirror" in rt.snapshotters.names()
        snap = rt.snapshotters.get("mirror")
        (image,) = rt.images.load(archive)
        try:
            top = rt.images.unpacked_chain(image, snap)
            assert top is not None
            assert (tmp_path / "state/snapshots/mirror").is_dir()
        finally:
            remove_all(snap)


def test_concurrent_unpacks_of_one_image_agree(tmp_path: Path) -> None:
    layers = [layer(("file", f"f{i}", b"x" * 4096)) for i in range(8)]
    archive = docker_archive(tmp_path / "a.tar", layers, ["c:1"])
    with Runtime(tmp_path / "state") as rt:
        rt.images.load(archive)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def unpack() -> None:
        # a runtime per thread: as separate processes, sharing only the state dir
        try:
            with Runtime(tmp_path / "state") as rt:
                snap = rt.snapshotters.get("overlay")
                results.append(rt.images.unpacked_chain(rt.images.get("c:1"), snap))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=unpack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Runtime(tmp_path / "state") as rt:
        snap = rt.snapshotters.get("overlay")
        try:
            assert errors == []
            assert len(set(results)) == 1
            assert len(snap.walk()) == 8  # each layer once, no leftover unpack snapshot
        finally:
            remove_all(snap)


def test_the_probe_falls_back_to_copy_where_overlay_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state directory on overlayfs (as inside many containers): no overlay upper there."""
    monkeypatch.delenv(SNAPSHOTTER_ENV, raising=False)
    for part in ("lower", "upper", "work", "merged"):
        (tmp_path / part).mkdir()
    merged = tmp_path / "merged"
    options = f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work"
    mounts.mount("overlay", merged, "overlay", 0, options)
    try:
        assert default_snapshotter(merged / "state") == "copy"
        assert default_snapshotter(tmp_path / "state") == "overlay"  # the same host, on ext4
    finally:
        mounts.umount(merged, detach=True)


def test_the_snapshotter_holding_data_stays_the_default(
    btrfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SNAPSHOTTER_ENV, raising=False)
    state = btrfs_dir / "state"
    assert default_snapshotter(state) == "btrfs"  # fresh: the probe's first choice
    (state / "snapshots" / "copy").mkdir(parents=True)  # images made with copy live here
    assert default_snapshotter(state) == "copy"
    (state / "snapshots" / "btrfs").mkdir()  # two hold data: back to the probe's order
    assert default_snapshotter(state) == "btrfs"
