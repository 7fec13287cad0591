"""Block arrays: create+mount, snapshot and clone, against the same done by plain commands.

For targets whose driver keeps snapshots (`ArrayTarget`: the ``loop`` and
``btrfs`` arrays). Each round makes a volume on the target and mounts it,
writes 4 MiB into it (untimed), snapshots it and clones it; the floor does the
same with the commands an operator would type, chosen by what the target's
mountpoint is:

- a block device (ext4, xfs on a loop device): ``truncate`` a sparse image,
  ``losetup``, ``mkfs``, ``mount``; the snapshot is ``sync`` and a sparse
  ``cp --reflink=auto`` of the image; the clone a copy of that;
- btrfs: ``btrfs subvolume create`` and a bind mount; ``btrfs subvolume
  snapshot -r`` and a writable ``btrfs subvolume snapshot``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cargohold.core.testing.bench import floors
from cargohold.core.testing.bench.lifecycle import mount_id
from cargohold.core.testing.bench.model import (
    Case,
    Figure,
    VolumeTarget,
    figures_from_samples,
    timed,
)

NAME = "arrays"
WRITTEN_MB = 4
MIN_ROUNDS = 3
STEPS = ("create+mount", "snapshot", "clone")


@runtime_checkable
class ArrayTarget(VolumeTarget, Protocol):
    """A volume target that also snapshots and clones its volumes."""

    size_mb: int

    def snapshot(self, volume: str, snapshot: str) -> None: ...
    def remove_snapshot(self, volume: str, snapshot: str) -> None: ...
    def clone(self, source: str, volume: str) -> None: ...


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _fill(path: Path) -> None:
    with open(path / "chbench.dat", "wb") as out:
        out.write(os.urandom(WRITTEN_MB << 20))
        out.flush()
        os.fsync(out.fileno())


class _Commands:
    """The floor for block devices: the loop commands by hand."""

    def __init__(self, scratch: Path, size_mb: int, fstype: str) -> None:
        self.scratch = scratch
        self.size_mb = size_mb
        self.fstype = fstype if fstype in ("ext4", "xfs") else "ext4"
        self.devices: list[str] = []

    def create_mount(self, key: str) -> Path:
        image, point = self.scratch / f"{key}.img", self.scratch / key
        point.mkdir()
        _run("truncate", "-s", f"{self.size_mb}M", str(image))
        device = _run("losetup", "--find", "--show", str(image))
        self.devices.append(device)
        _run(f"mkfs.{self.fstype}", "-q", device)
        floors.mount(device, point, self.fstype, 0)
        return point

    def snapshot(self, key: str) -> None:
        os.sync()
        _copy(self.scratch / f"{key}.img", self.scratch / f"{key}.snap")

    def clone(self, key: str) -> None:
        _copy(self.scratch / f"{key}.snap", self.scratch / f"{key}.clone")

    def teardown(self, key: str) -> None:
        floors.umount(self.scratch / key)
        _run("losetup", "-d", self.devices.pop())
        (self.scratch / key).rmdir()
        for suffix in (".img", ".snap", ".clone"):
            (self.scratch / f"{key}{suffix}").unlink(missing_ok=True)


class _Subvolumes:
    """The floor for btrfs: subvolume commands on the same btrfs."""

    def __init__(self, scratch: Path, btrfs_dir: Path) -> None:
        self.scratch = scratch
        self.area = btrfs_dir

    def create_mount(self, key: str) -> Path:
        point = self.scratch / key
        point.mkdir()
        _run("btrfs", "subvolume", "create", str(self.area / key))
        floors.bind(self.area / key, point)
        return point

    def snapshot(self, key: str) -> None:
        _run(
            "btrfs",
            "subvolume",
            "snapshot",
            "-r",
            str(self.area / key),
            str(self.area / f"{key}.s"),
        )

    def clone(self, key: str) -> None:
        _run("btrfs", "subvolume", "snapshot", str(self.area / key), str(self.area / f"{key}.c"))

    def teardown(self, key: str) -> None:
        floors.umount(self.scratch / key)
        (self.scratch / key).rmdir()
        for name in (f"{key}.c", f"{key}.s", key):
            if (self.area / name).exists():
                _run("btrfs", "subvolume", "delete", str(self.area / name))


def _copy(source: Path, target: Path) -> None:
    _run("cp", "--reflink=auto", "--sparse=always", str(source), str(target))


def _target_round(
    target: ArrayTarget, volume: str, clone: str, mounted: Callable[[Path], None]
) -> dict[str, float]:
    """One round on the target; ``mounted`` is shown the volume while it is mounted."""
    import time

    ident = mount_id()
    took: dict[str, float] = {}
    began = time.perf_counter()
    target.create(volume)
    path = target.mount(volume, ident)
    took["create+mount"] = time.perf_counter() - began
    try:
        _fill(path)
        mounted(path)
        took["snapshot"] = timed(functools.partial(target.snapshot, volume, "s"))
        took["clone"] = timed(functools.partial(target.clone, volume, clone))
    finally:
        with contextlib.suppress(Exception):
            target.remove(clone)
        with contextlib.suppress(Exception):
            target.remove_snapshot(volume, "s")
        target.unmount(volume, ident)
        target.remove(volume)
    return took


def _floor_round(bare: _Commands | _Subvolumes, key: str) -> dict[str, float]:
    took = {"create+mount": timed(functools.partial(bare.create_mount, key))}
    try:
        _fill(bare.scratch / key)
        took["snapshot"] = timed(functools.partial(bare.snapshot, key))
        took["clone"] = timed(functools.partial(bare.clone, key))
    finally:
        bare.teardown(key)
    return took


def run(target: ArrayTarget, case: Case) -> list[Figure]:
    prefix = f"chb{secrets.token_hex(3)}"
    scratch = case.workdir / "arrays"
    scratch.mkdir(parents=True, exist_ok=True)
    ours: dict[str, list[float]] = {s: [] for s in STEPS}
    floor: dict[str, list[float]] = {s: [] for s in STEPS}
    bare: _Commands | _Subvolumes | None = None
    chosen: list[_Commands | _Subvolumes] = []

    def choose(path: Path) -> None:
        if not chosen:  # the floor follows what the target's volumes are
            chosen.append(_floor_for(path, scratch, target.size_mb))

    try:
        for i in range(case.rounds):
            if i >= MIN_ROUNDS and case.expired():
                break
            took = _target_round(target, f"{prefix}-{i}", f"{prefix}-{i}c", choose)
            bare = chosen[0]
            took_floor = _floor_round(bare, f"f{i}")
            for step in STEPS:
                ours[step].append(took[step])
                floor[step].append(took_floor[step])
            case.advance((i + 1) / case.rounds)
    finally:
        floors.unmount_everything_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        if isinstance(bare, _Subvolumes):
            bare.area.rmdir()
    kind = "loop commands" if isinstance(bare, _Commands) else "btrfs subvolume commands"
    extra = {"size_mb": target.size_mb, "written_mb": WRITTEN_MB}
    figures: list[Figure] = []
    for step in STEPS:
        figures += figures_from_samples(NAME, step, ours[step], floor[step], kind, extra=extra)
    case.advance(1.0)
    return figures


def _floor_for(mountpoint: Path, scratch: Path, size_mb: int) -> _Commands | _Subvolumes:
    fstype = floors.filesystem_of(mountpoint)
    if fstype == "btrfs":
        # on the same btrfs as the volume, outside it: another mount of that filesystem
        for point in floors.mounts_of_same_filesystem(mountpoint):
            if point != mountpoint and os.access(point, os.W_OK):
                area = point / f".chbench-floor-{secrets.token_hex(3)}"
                area.mkdir()
                return _Subvolumes(scratch, area)
        raise RuntimeError(f"no other mount of the btrfs holding {mountpoint} for the floor")
    return _Commands(scratch, size_mb, fstype)
