"""The block-volume driver on real arrays: snapshots, clones, resize, size limits, restart.

Volumes go through the volume service of a runtime with the installed plugins,
as users make them; the xfs cases run on the reflink xfs pool of conftest.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.kernel import mounts
from cargohold.drivers.arrays.block import BlockVolumeDriver

from ..docker.conftest import cargohold_cli
from .conftest import missing_tools_reason, release_btrfs_pool

pytestmark = pytest.mark.root

CAP_SYS_RESOURCE = 24


@pytest.fixture(autouse=True)
def _tools(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = missing_tools_reason("mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "e2fsck", "xfs_growfs")
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
            for mount_id, count in volume.refs.items():
                for _ in range(count):
                    runtime.volumes.unmount(volume.name, mount_id)
            runtime.volumes.remove(volume.name)
        runtime.close()
        release_btrfs_pool(state_dir)


def name() -> str:
    return f"ba-{secrets.token_hex(4)}"


def fill(path: Path, seed: str) -> None:
    """Files of several sizes, a directory and a sparse file."""
    (path / "small").write_text(seed)
    (path / "dir").mkdir(exist_ok=True)
    (path / "dir" / "big").write_bytes(hashlib.sha256(seed.encode()).digest() * 65536)  # 2 MiB
    with open(path / "sparse", "wb") as sparse:
        sparse.seek(8 * 1024**2)
        sparse.write(seed.encode())


def digest(path: Path) -> dict[str, str]:
    """Every file's bytes under ``path``, by relative name (lost+found aside)."""
    found = {}
    for directory, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != "lost+found"]
        for file in files:
            full = Path(directory, file)
            found[str(full.relative_to(path))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return found


CASES = [
    pytest.param("loop", {"size": "64m"}, id="loop-ext4"),
    pytest.param("loop", {"size": "320m", "fs": "xfs"}, id="loop-xfs"),
    pytest.param("btrfs", {"size": "64m"}, id="btrfs"),
]


@pytest.mark.parametrize(("driver", "opts"), CASES)
def test_snapshot_then_restore_is_byte_identical(
    rt: Runtime, driver: str, opts: dict[str, str]
) -> None:
    vol, restored = name(), name()
    rt.volumes.create(vol, driver, opts)
    path = rt.volumes.mount(vol, "writer")
    fill(path, "before")
    rt.volumes.snapshot(vol, "s1")  # mounted and written: the driver freezes it
    at_snapshot = digest(path)
    fill(path, "after")
    (path / "small").unlink()
    (path / "new").write_text("only after")
    assert digest(path) != at_snapshot
    rt.volumes.create(restored, driver, {"snapshot": f"{vol}@s1"})
    again = rt.volumes.mount(restored, "reader")
    assert digest(again) == at_snapshot
    assert [s.name for s in rt.volumes.snapshots(vol)] == ["s1"]
    rt.volumes.unmount(vol, "writer")
    rt.volumes.unmount(restored, "reader")


@pytest.mark.parametrize(("driver", "opts"), CASES)
def test_a_clone_is_independent_of_its_source(
    rt: Runtime, driver: str, opts: dict[str, str]
) -> None:
    source, clone = name(), name()
    rt.volumes.create(source, driver, opts)
    src = rt.volumes.mount(source, "a")
    fill(src, "source")
    rt.volumes.create(clone, driver, {"from": source})  # while the source is mounted
    copy = rt.volumes.mount(clone, "b")
    assert digest(copy) == digest(src)
    (copy / "small").write_text("changed in the clone")
    (src / "dir" / "big").unlink()
    assert (src / "small").read_text() == "source"
    assert (copy / "dir" / "big").exists()
    rt.volumes.unmount(source, "a")
    rt.volumes.remove(source)
    assert (copy / "small").read_text() == "changed in the clone"
    rt.volumes.unmount(clone, "b")


def test_snapshot_commands(rt: Runtime, state_dir: Path) -> None:
    vol = name()
    rt.volumes.create(vol, "loop", {"size": "32m"})
    (rt.volumes.mount(vol, "w") / "f").write_text("kept")
    assert cargohold_cli(state_dir, "volume", "snapshot", "create", vol, "s1").stdout == "s1\n"
    listed = cargohold_cli(state_dir, "volume", "snapshot", "ls", vol)
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("s1 ")
    again = cargohold_cli(state_dir, "volume", "snapshot", "create", vol, "s1")
    assert again.returncode == 1 and "already has a snapshot s1" in again.stderr
    restored = name()
    made = cargohold_cli(
        state_dir, "volume", "create", "-d", "loop", "-o", f"snapshot={vol}@s1", restored
    )
    assert made.returncode == 0, made.stderr
    assert (rt.volumes.mount(restored, "r") / "f").read_text() == "kept"
    assert cargohold_cli(state_dir, "volume", "snapshot", "rm", vol, "s1").stdout == "s1\n"
    assert cargohold_cli(state_dir, "volume", "snapshot", "ls", "-q", vol).stdout == ""
    missing = cargohold_cli(state_dir, "volume", "snapshot", "create", "nosuch", "s")
    assert missing.returncode == 1 and "no such volume: nosuch" in missing.stderr
    local = name()
    rt.volumes.create(local, "local")
    refused = cargohold_cli(state_dir, "volume", "snapshot", "create", local, "s")
    assert refused.returncode == 1 and "keeps no snapshots" in refused.stderr
    rt.volumes.unmount(vol, "w")
    rt.volumes.unmount(restored, "r")


def fs_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def test_online_resize_grows_xfs_while_mounted(rt: Runtime) -> None:
    vol = name()
    rt.volumes.create(vol, "loop", {"size": "320m", "fs": "xfs"})
    path = rt.volumes.mount(vol, "m")
    fill(path, "kept")
    before, kept = fs_bytes(path), digest(path)
    rt.drivers.get("loop").resize(vol, 640 * 1024**2)
    assert mounts.is_mountpoint(path)
    assert fs_bytes(path) > before + 250 * 1024**2
    assert digest(path) == kept
    rt.volumes.unmount(vol, "m")


def has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def test_resize_grows_ext4(rt: Runtime) -> None:
    """Online where the kernel lets us (CAP_SYS_RESOURCE); else at the next mount."""
    vol = name()
    rt.volumes.create(vol, "loop", {"size": "64m"})
    driver = rt.drivers.get("loop")
    path = rt.volumes.mount(vol, "m")
    fill(path, "kept")
    before, kept = fs_bytes(path), digest(path)
    if has_cap_sys_resource():
        driver.resize(vol, 128 * 1024**2)
    else:
        with pytest.raises(Exception, match="grows the next time the volume is mounted"):
            driver.resize(vol, 128 * 1024**2)
        rt.volumes.unmount(vol, "m")
        path = rt.volumes.mount(vol, "m")
    assert fs_bytes(path) > before + 50 * 1024**2
    assert digest(path) == kept
    rt.volumes.unmount(vol, "m")
    driver.resize(vol, 192 * 1024**2)  # unmounted: grown offline at once
    path = rt.volumes.mount(vol, "m")
    assert fs_bytes(path) > before + 110 * 1024**2
    assert digest(path) == kept
    rt.volumes.unmount(vol, "m")


def test_resize_of_a_btrfs_volume_raises_its_limit(rt: Runtime) -> None:
    vol = name()
    rt.volumes.create(vol, "btrfs", {"size": "16m"})
    path = rt.volumes.mount(vol, "m")
    with pytest.raises(OSError) as failed:
        write_until_full(path / "a", 32)
    assert failed.value.errno in (errno.EDQUOT, errno.ENOSPC)
    (path / "a").unlink()
    rt.drivers.get("btrfs").resize(vol, 64 * 1024**2)
    write_until_full(path / "b", 24)  # past the old limit
    rt.volumes.unmount(vol, "m")


def write_until_full(target: Path, mib: int) -> None:
    block = secrets.token_bytes(1024**2)
    with open(target, "wb") as out:
        for _ in range(mib):
            out.write(block)
            out.flush()
            os.fsync(out.fileno())


@pytest.mark.parametrize(
    ("driver", "opts", "errnos"),
    [
        pytest.param("loop", {"size": "32m"}, (errno.ENOSPC,), id="loop-ext4"),
        pytest.param("loop", {"size": "320m", "fs": "xfs"}, (errno.ENOSPC,), id="loop-xfs"),
        pytest.param("btrfs", {"size": "32m"}, (errno.EDQUOT, errno.ENOSPC), id="btrfs"),
    ],
)
def test_size_is_enforced_and_nothing_else_breaks(
    rt: Runtime, driver: str, opts: dict[str, str], errnos: tuple[int, ...]
) -> None:
    vol = name()
    rt.volumes.create(vol, driver, opts)
    path = rt.volumes.mount(vol, "m")
    limit = int(opts["size"][:-1])
    with pytest.raises(OSError) as failed:
        write_until_full(path / "fill", limit + 16)
    assert failed.value.errno in errnos
    (path / "fill").unlink()
    os.sync()
    (path / "after").write_text("still works")
    rt.volumes.unmount(vol, "m")
    assert (rt.volumes.mount(vol, "m") / "after").read_text() == "still works"
    rt.volumes.unmount(vol, "m")


def test_a_host_restart_finds_the_volume_mounted_again(state_dir: Path) -> None:
    """The mount and the loop device vanish (as at a reboot); the next runtime restores them."""
    vol = name()
    with Runtime(state_dir) as first:
        first.volumes.create(vol, "loop", {"size": "32m"})
        path = first.volumes.mount(vol, "container")
        (path / "f").write_text("before the reboot")
    mounts.umount(path)  # the device goes with it (autoclear)
    assert not mounts.is_mountpoint(path)
    with Runtime(state_dir) as second:
        second.drivers.get("loop")  # the driver starts: it mounts what it had mounted
        assert mounts.is_mountpoint(path)
        assert second.volumes.mount(vol, "again") == path
        assert (path / "f").read_text() == "before the reboot"
        second.volumes.unmount(vol, "again")
        second.volumes.unmount(vol, "container")
        assert not mounts.is_mountpoint(path)
        second.volumes.remove(vol)


def test_the_driver_checks_ext4_after_an_unclean_stop(rt: Runtime) -> None:
    vol = name()
    rt.volumes.create(vol, "loop", {"size": "32m"})
    path = rt.volumes.mount(vol, "m")
    (path / "f").write_text("journaled")
    image = rt.state_dir / "drivers" / "loop" / "array" / "pool" / f"{vol}.img"
    mounts.umount(path, detach=True)
    # mark the filesystem as having errors, as a crash mid-write may leave it
    subprocess.run(["debugfs", "-w", "-R", "ssv state 2", str(image)], capture_output=True)
    driver = rt.drivers.get("loop")
    assert isinstance(driver, BlockVolumeDriver)
    driver.restore()
    assert mounts.is_mountpoint(path)
    assert (path / "f").read_text() == "journaled"
    rt.volumes.unmount(vol, "m")
