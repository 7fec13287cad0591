"""A btrfs filesystem on a loop device, for the btrfs snapshotter's tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cargohold.core.kernel import mounts


def btrfs_missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "loop devices and mounts need root"
    if shutil.which("mkfs.btrfs") is None:
        return "mkfs.btrfs is missing (bash .ci/setup installs btrfs-progs)"
    if "btrfs" not in Path("/proc/filesystems").read_text():
        # the module loads on first mount; try it
        subprocess.run(["modprobe", "btrfs"], capture_output=True)
        if "btrfs" not in Path("/proc/filesystems").read_text():
            return "the kernel has no btrfs"
    return None


@contextmanager
def loop_btrfs(size: str = "512M") -> Iterator[Path]:
    """Mount a fresh sparse btrfs image; unmount, detach and delete it afterwards."""
    work = Path(tempfile.mkdtemp(prefix="chbtrfs-", dir="/var/tmp"))
    image, target = work / "fs.img", work / "mnt"
    target.mkdir()
    device = ""
    try:
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
        device = subprocess.run(
            ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        mounts.mount(device, target, "btrfs")
        yield target
    finally:
        if mounts.is_mountpoint(target):
            mounts.umount(target, detach=True)
        if device:
            subprocess.run(["losetup", "-d", device], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def btrfs_mount() -> Iterator[Path]:
    reason = btrfs_missing_reason()
    if reason:
        pytest.skip(reason)
    with loop_btrfs() as target:
        yield target


@pytest.fixture
def btrfs_dir(btrfs_mount: Path) -> Iterator[Path]:
    """A fresh directory on a loop-mounted btrfs, removed after the test."""
    path = Path(tempfile.mkdtemp(dir=btrfs_mount))
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True)
