"""Cloud sync: fetch and write-back throughput, one large file and many small ones.

For targets whose volumes live in an object store or file share (`CloudTarget`).
*Write-back* is the last unmount until the background upload is done; *fetch*
is a first mount of a volume whose objects are already in the store. The
floor (`CloudFloor`) moves the same files between a directory and the same
store with a plain tool in the same rounds: ``rclone copy`` for S3 (cargohold's
plugin gives it the volume's endpoint and credentials).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Protocol, runtime_checkable

from cargohold.core.testing.bench.lifecycle import mount_id
from cargohold.core.testing.bench.model import Case, Figure, VolumeTarget, timed

NAME = "cloud"
SMALL_FILES = 200
SMALL_SIZE = 4096
MIN_ROUNDS = 2


@runtime_checkable
class CloudFloor(Protocol):
    name: str

    def upload(self, local: Path, prefix: str) -> None: ...
    def download(self, prefix: str, local: Path) -> None: ...


@runtime_checkable
class CloudTarget(VolumeTarget, Protocol):
    """A volume target in a store: volumes at a chosen prefix, write-back awaited."""

    def create_at(self, volume: str, prefix: str) -> None: ...
    def settle(self, volume: str) -> None: ...
    def cloud_floor(self) -> CloudFloor: ...


def make_tree(root: Path, kind: str, large_mb: int) -> int:
    """The files of one workload; returns their bytes."""
    root.mkdir(parents=True)
    if kind == "large":
        with open(root / "large.bin", "wb") as out:
            for _ in range(large_mb):
                out.write(os.urandom(1 << 20))
        return large_mb << 20
    for n in range(SMALL_FILES):
        (root / f"f{n:04d}").write_bytes(os.urandom(SMALL_SIZE))
    return SMALL_FILES * SMALL_SIZE


def _write_back(target: CloudTarget, source: Path, prefix: str, volume: str) -> float:
    ident = mount_id()
    target.create_at(volume, prefix)
    try:
        data = target.mount(volume, ident)
        shutil.copytree(source, data, dirs_exist_ok=True)

        def unmount_and_upload() -> None:
            target.unmount(volume, ident)
            target.settle(volume)

        return timed(unmount_and_upload)
    finally:
        target.remove(volume)


def _fetch(target: CloudTarget, prefix: str, volume: str) -> float:
    ident = mount_id()
    target.create_at(volume, prefix)
    try:
        seconds = timed(lambda: target.mount(volume, ident))
        target.unmount(volume, ident)
        return seconds
    finally:
        target.remove(volume)


def run(target: CloudTarget, case: Case) -> list[Figure]:
    floor = target.cloud_floor()
    run_id = secrets.token_hex(3)
    scratch = case.workdir / "cloud"
    figures: list[Figure] = []
    large_mb = max(1, case.size_mb // 2)
    try:
        for n, kind in enumerate(("large", "small")):
            source = scratch / kind
            total = make_tree(source, kind, large_mb)
            seeded = f"chbench-{run_id}-{kind}-seed"
            floor.upload(source, seeded)  # what both fetch
            ours: dict[str, list[float]] = {"write-back": [], "fetch": []}
            theirs: dict[str, list[float]] = {"write-back": [], "fetch": []}
            for i in range(case.rounds):
                # the large file's rounds get the first half of the case's time
                if i >= MIN_ROUNDS and time.monotonic() - case.started > case.seconds * (n + 1) / 2:
                    break
                key = f"chbench-{run_id}-{kind}-{i}"
                theirs["write-back"].append(timed(partial(floor.upload, source, f"{key}-floor")))
                ours["write-back"].append(_write_back(target, source, key, f"chb{run_id}w{i}"))
                into = scratch / f"fetched-{i}"
                theirs["fetch"].append(timed(partial(floor.download, seeded, into)))
                shutil.rmtree(into, ignore_errors=True)
                ours["fetch"].append(_fetch(target, seeded, f"chb{run_id}f{i}"))
                case.advance((n + (i + 1) / case.rounds) / 2)
            for direction in ("write-back", "fetch"):
                figures.append(_figure(kind, direction, total, ours, theirs, floor.name))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    case.advance(1.0)
    return figures


def _figure(
    kind: str,
    direction: str,
    total: int,
    ours: dict[str, list[float]],
    theirs: dict[str, list[float]],
    floor_name: str,
) -> Figure:
    import statistics

    mine = [total / s / 1e6 for s in ours[direction]]
    floor = [total / s / 1e6 for s in theirs[direction]]
    what = "1 large file" if kind == "large" else f"{SMALL_FILES} small files"
    return Figure(
        workload=NAME,
        name=f"{direction} {what}",
        unit="MB/s",
        better="higher",
        value=statistics.median(mine),
        floor=statistics.median(floor),
        floor_name=floor_name,
        samples=mine,
        floor_samples=floor,
        extra={"bytes": total},
    )
