"""Bad input to the array drivers: clear errors, nothing leaked, nothing formatted.

The autouse leak check of conftest runs after each test: no mount and no loop
device may be left under its temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import CargoholdError, Conflict, InvalidArgument, NotFound, Runtime
from cargohold.core.kernel import blockdev, loop

from .conftest import missing_tools_reason, mounted_image, release_btrfs_pool

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _tools(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = missing_tools_reason("mkfs.ext4", "mkfs.xfs", "mkfs.btrfs")
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("CARGOHOLD_ARRAY_BTRFS_IMAGE_SIZE", "1g")


@pytest.fixture
def rt(state_dir: Path) -> Iterator[Runtime]:
    runtime = Runtime(state_dir)
    try:
        yield runtime
    finally:
        for volume in runtime.volumes.list():
            runtime.volumes.remove(volume.name)
        runtime.close()
        release_btrfs_pool(state_dir)


def name() -> str:
    return f"bad-{secrets.token_hex(4)}"


def pool(rt: Runtime) -> Path:
    return rt.state_dir / "drivers" / "loop" / "array" / "pool"


def nothing_made(rt: Runtime, driver: str = "loop") -> None:
    assert rt.volumes.list() == []
    assert list((rt.state_dir / "drivers" / driver / "volumes").glob("*/")) == []
    if driver == "loop":
        assert list(pool(rt).iterdir()) == []


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"size": "lots"}, "not a size"),
        ({"size": "1k"}, "below the loop array's minimum"),
        ({"size": "900t"}, "exceeds the whole loop pool"),
        ({"fs": "ntfs"}, "not one of: ext4, xfs"),
        ({"from": "nosuch"}, "no loop volume nosuch"),
        ({"from": "../etc"}, "invalid volume name '../etc'"),
        ({"snapshot": "nosuch@s1"}, "no loop volume nosuch"),
        ({"snapshot": "justaname"}, "VOLUME@SNAPSHOT|no loop volume"),
        ({"from": "aa", "snapshot": "aa@b"}, "from or snapshot|no loop volume"),
    ],
)
def test_bad_options_are_refused_before_anything_is_made(
    rt: Runtime, opts: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        rt.volumes.create(name(), "loop", opts)
    nothing_made(rt)


def test_a_snapshot_that_does_not_exist(rt: Runtime) -> None:
    vol = name()
    rt.volumes.create(vol, "loop", {"size": "16m"})
    with pytest.raises(InvalidArgument, match=f"volume {vol} has no snapshot s9"):
        rt.volumes.create(name(), "loop", {"snapshot": f"{vol}@s9"})
    with pytest.raises(InvalidArgument, match="not a valid name"):
        rt.volumes.snapshot(vol, "../escape")
    with pytest.raises(NotFound, match="no snapshot s9"):
        rt.volumes.remove_snapshot(vol, "s9")
    assert [v.name for v in rt.volumes.list()] == [vol]


def test_a_snapshot_of_a_missing_volume(rt: Runtime) -> None:
    with pytest.raises(NotFound, match="no such volume: nosuch"):
        rt.volumes.snapshot("nosuch", "s1")
    with pytest.raises(NotFound):
        rt.volumes.snapshots("nosuch")


def test_a_size_xfs_cannot_be_made_in_leaves_nothing(rt: Runtime) -> None:
    with pytest.raises(CargoholdError, match=r"mkfs\.xfs .* failed"):
        rt.volumes.create(name(), "loop", {"size": "32m", "fs": "xfs"})
    nothing_made(rt)


def fingerprint(path: Path) -> str:
    with open(path, "rb") as image:
        return hashlib.sha256(image.read(4 * 1024**2)).hexdigest()


def test_an_image_holding_someone_elses_filesystem_is_never_formatted(rt: Runtime) -> None:
    vol = name()
    rt.drivers.get("loop")  # the pool exists once the driver does
    image = pool(rt) / f"{vol}.img"
    subprocess.run(["truncate", "-s", "32m", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    theirs = blockdev.identify(image)
    before = fingerprint(image)
    with pytest.raises(Conflict, match="that cargohold did not make; it is left untouched"):
        rt.volumes.create(vol, "loop", {"size": "32m"})
    assert image.exists() and fingerprint(image) == before
    assert blockdev.identify(image) == theirs
    assert rt.volumes.list() == []
    assert not (rt.state_dir / "drivers" / "loop" / "volumes" / vol).exists()
    assert loop.find(image) is None
    image.unlink()


def test_a_pool_path_not_on_btrfs_is_refused(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARGOHOLD_ARRAY_BTRFS_PATH", str(tmp_path / "pool"))
    with Runtime(state_dir) as runtime:
        with pytest.raises(CargoholdError, match="not btrfs"):
            runtime.volumes.create(name(), "btrfs", {})
        assert runtime.volumes.list() == []


def test_a_btrfs_pool_without_quotas_refuses_size_but_not_plain_volumes(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mounted_image("512m", ["mkfs.btrfs", "-q"], tmp_path / "fs") as target:
        monkeypatch.setenv("CARGOHOLD_ARRAY_BTRFS_PATH", str(target / "pool"))
        with Runtime(state_dir) as runtime:
            with pytest.raises(CargoholdError, match="btrfs quota enable"):
                runtime.volumes.create(name(), "btrfs", {"size": "16m"})
            assert list((target / "pool" / "volumes").iterdir()) == []
            plain = name()
            runtime.volumes.create(plain, "btrfs", {})
            (runtime.volumes.mount(plain, "m") / "f").write_text("no limit")
            runtime.volumes.unmount(plain, "m")
            runtime.volumes.remove(plain)


def test_a_btrfs_device_holding_another_filesystem_is_refused(
    tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "256m", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    before = fingerprint(image)
    device, fd = loop.attach_held(image)
    try:
        monkeypatch.setenv("CARGOHOLD_ARRAY_BTRFS_DEVICE", str(device.path))
        with (
            Runtime(state_dir) as runtime,
            pytest.raises(CargoholdError, match="not make; it is left untouched"),
        ):
            runtime.volumes.create(name(), "btrfs", {})
    finally:
        os.close(fd)
    assert fingerprint(image) == before
    found = blockdev.identify(image)
    assert found is not None and found.type == "ext4"
