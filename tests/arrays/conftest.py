"""Fixtures of the array tests: real loop devices, real filesystems, and a leak check.

Every test here runs as root on the real kernel. `no_leaks` (autouse) fails a
test that leaves a mount or a loop device under its temporary directory, and
then removes what it left, so one failure does not spill into the next test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cargohold.core.kernel import loop, mounts
from tests.docker.conftest import short_dir, start_serve

__all__ = ["short_dir", "start_serve"]


def missing_tools_reason(*tools: str) -> str | None:
    if os.geteuid() != 0:
        return "loop devices and mounts need root"
    lacking = [t for t in tools if shutil.which(t) is None]
    if lacking:
        return f"{', '.join(lacking)} missing (bash .ci/setup installs them)"
    return None


def loops_under(top: Path) -> list[str]:
    """Loop devices whose backing file is under ``top``."""
    real = os.path.realpath(top)
    found = []
    for entry in Path("/sys/block").glob("loop*"):
        try:
            backing = (entry / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(real + "/"):
            found.append(f"/dev/{entry.name} ({backing})")
    return found


def release_under(top: Path) -> None:
    """Detach every mount and loop device under ``top`` (ours only: it is a temp dir)."""
    for entry in mounts.mounts_under(top):
        mounts.umount(entry.target, detach=True)
    for line in loops_under(top):
        loop.detach(line.split(" ", 1)[0])


def release_btrfs_pool(state_dir: Path) -> None:
    """Unmount the btrfs array's own pool (by design it stays mounted for the host);
    its loop device goes with it. Anything else left is a leak."""
    pool = state_dir / "drivers" / "btrfs" / "array" / "pool"
    if pool.is_dir() and mounts.is_mountpoint(pool):
        mounts.umount(pool)


def leaks(top: Path, settle: float = 5) -> list[str]:
    """Mounts and loop devices left under ``top``. A loop device is given ``settle``
    seconds to go: the kernel lets an autoclear device go a moment after the unmount
    of a filesystem on it returns (btrfs closes its devices late)."""
    deadline = time.monotonic() + settle
    while loops_under(top) and not mounts.mounts_under(top) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [f"mount {m.target}" for m in mounts.mounts_under(top)] + loops_under(top)


@pytest.fixture(autouse=True)
def no_leaks(tmp_path: Path) -> Iterator[None]:
    yield
    left = leaks(tmp_path)
    release_under(tmp_path)
    assert not left, f"the test leaked: {left}"


@contextmanager
def mounted_image(size: str, mkfs: list[str], work: Path) -> Iterator[Path]:
    """A fresh sparse image made with ``mkfs``, mounted through a loop device."""
    image, target = work / "fs.img", work / "mnt"
    target.mkdir(parents=True)
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    device, fd = loop.attach_held(image)
    try:
        fstype = mkfs[0].removeprefix("mkfs.")
        mounts.mount(device.path, target, fstype)
    finally:
        os.close(fd)  # autoclear: the device goes with the mount
    try:
        yield target
    finally:
        mounts.umount(target, detach=True)


@pytest.fixture(scope="session")
def xfs_reflink_pool() -> Iterator[Path]:
    """A directory on an xfs made with reflink=1 (an image file on a loop device)."""
    reason = missing_tools_reason("mkfs.xfs")
    if reason:
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="charr-xfs-", dir="/var/tmp"))
    try:
        with mounted_image("2G", ["mkfs.xfs", "-q", "-m", "reflink=1"], work) as target:
            yield target
    finally:
        release_under(work)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def xfs_pool(xfs_reflink_pool: Path) -> Iterator[Path]:
    """A fresh pool directory on the reflink xfs, emptied afterwards."""
    path = Path(tempfile.mkdtemp(dir=xfs_reflink_pool))
    try:
        yield path
    finally:
        left = leaks(path)
        release_under(path)
        shutil.rmtree(path, ignore_errors=True)
    assert not left, f"the test leaked: {left}"


@pytest.fixture
def small_btrfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the btrfs array's own pool image small (sparse anyway) in tests."""
    monkeypatch.setenv("CARGOHOLD_ARRAY_BTRFS_IMAGE_SIZE", "1g")
