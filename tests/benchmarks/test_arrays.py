"""Block volumes on the loop array against the same steps as plain commands.

*Create + mount*: a thin 1 GiB ext4 volume made and mounted by the loop driver
(sparse image, ``LOOP_CONFIGURE``, mkfs.ext4, superblock read, mount(2)), and
the same through the volume service (plus its lock and two SQLite transactions
with ``synchronous=FULL``), against ``truncate -s 1G``, ``losetup --find
--show``, ``mkfs.ext4`` with the same options, and ``mount``, each run as a
command. The goal is at most 1.0x: the syscalls should beat the commands.

*Snapshot* and *clone* of a volume holding 64 MiB, on a pool on xfs made with
``reflink=1``, against ``cp --reflink=always`` of its image file. Of a mounted
volume ours freezes the filesystem around the reflink (so the copy holds
everything written before it, as after a clean unmount), and the freeze, which
writes back the filesystem and copies on write the blocks it rewrites, is
most of the cost; of an unmounted one it is the reflink and a link(2).

Both run in alternating rounds so the machine's drift hits each side alike;
teardown is not timed. Medians (ms) and ratios go to ``extra_info`` and are
printed; nothing is asserted about time.
"""

from __future__ import annotations

import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.kernel import mounts
from cargohold.drivers.arrays.filesystems import MKFS
from tests.arrays.conftest import leaks, missing_tools_reason, mounted_image, release_under

pytestmark = [pytest.mark.benchmark, pytest.mark.root]

CREATE_ROUNDS = 15
SNAPSHOT_ROUNDS = 20
GIB = 1024**3


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    reason = missing_tools_reason("mkfs.ext4", "mkfs.xfs", "losetup", "truncate", "mount", "cp")
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="charr-bench-", dir="/var/tmp"))
    try:
        yield root
    finally:
        left = leaks(root)
        release_under(root)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"the benchmark leaked: {left}"


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def report(benchmark: Any, title: str, info: dict[str, float]) -> None:
    benchmark.extra_info.update(info)
    print(f"\n{title}:")
    for key, value in info.items():
        print(f"  {key:>24} = {value}")


def test_create_and_mount_vs_commands(benchmark: Any, work: Path) -> None:
    floor_dir = work / "floor"
    floor_dir.mkdir()
    sides = ("commands", "driver", "service")
    samples: dict[str, list[float]] = {side: [] for side in sides}
    with Runtime(work / "state") as rt:
        driver = rt.drivers.get("loop")

        def commands(i: int) -> Callable[[], None]:
            image, target = floor_dir / f"{i}.img", floor_dir / f"mnt{i}"
            target.mkdir()
            began = time.perf_counter()
            run("truncate", "-s", "1G", str(image))
            device = run("losetup", "--find", "--show", str(image)).strip()
            run(*MKFS["ext4"], device)
            run("mount", "-t", "ext4", device, str(target))
            samples["commands"].append(time.perf_counter() - began)

            def undo() -> None:
                mounts.umount(target)
                run("losetup", "-d", device)
                image.unlink()

            return undo

        def by_driver(i: int) -> Callable[[], None]:
            name, opts = f"drv-{i}-{secrets.token_hex(3)}", {"size": GIB, "fs": "ext4"}
            began = time.perf_counter()
            driver.create(name, opts)
            driver.mount(name, "bench", opts)
            samples["driver"].append(time.perf_counter() - began)

            def undo() -> None:
                driver.unmount(name, "bench", opts)
                driver.remove(name, opts)

            return undo

        def by_service(i: int) -> Callable[[], None]:
            name = f"svc-{i}-{secrets.token_hex(3)}"
            began = time.perf_counter()
            rt.volumes.create(name, "loop", {"size": "1g"})
            rt.volumes.mount(name, "bench")
            samples["service"].append(time.perf_counter() - began)

            def undo() -> None:
                rt.volumes.unmount(name, "bench")
                rt.volumes.remove(name)

            return undo

        steps = (commands, by_driver, by_service)
        for i in range(2):  # warm-up: page cache, bytecode, the driver itself
            for step in steps:
                step(-1 - i)()
        for side in sides:
            samples[side].clear()
        counter = iter(range(10_000))

        def one_round() -> None:
            i = next(counter)
            for step in steps[i % 3 :] + steps[: i % 3]:  # each side goes first in turn
                step(i)()

        benchmark.pedantic(one_round, rounds=CREATE_ROUNDS, iterations=1)
    times = medians(samples)
    report(
        benchmark,
        "create + mount of a thin 1 GiB ext4 block volume",
        {
            "commands_median_ms": round(times["commands"], 1),
            "driver_median_ms": round(times["driver"], 1),
            "service_median_ms": round(times["service"], 1),
            "driver_ratio": round(times["driver"] / times["commands"], 2),
            "service_ratio": round(times["service"] / times["commands"], 2),
        },
    )


def test_snapshot_and_clone_vs_reflink_copy(
    benchmark: Any, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mounted_image("4G", ["mkfs.xfs", "-q", "-m", "reflink=1"], work / "xfs") as xfs:
        pool = xfs / "pool"
        monkeypatch.setenv("CARGOHOLD_ARRAY_LOOP_POOL", str(pool))
        samples: dict[str, list[float]] = {
            "cp_reflink": [],
            "snapshot": [],
            "clone": [],
            "snapshot_unmounted": [],
            "clone_unmounted": [],
        }
        with Runtime(work / "state") as rt:
            rt.volumes.create("source", "loop", {"size": "1g"})
            data = rt.volumes.mount("source", "bench")
            (data / "blob").write_bytes(secrets.token_bytes(64 * 1024**2))
            rt.volumes.create("idle", "loop", {"size": "1g"})
            (rt.volumes.mount("idle", "bench") / "blob").write_bytes(secrets.token_bytes(64 << 20))
            rt.volumes.unmount("idle", "bench")
            image = pool / "source.img"
            counter = iter(range(10_000))

            def timed(key: str, call: Callable[[], object]) -> None:
                began = time.perf_counter()
                call()
                samples[key].append(time.perf_counter() - began)

            def one_round() -> None:
                i = next(counter)
                copy = xfs / f"copy-{i}.img"
                began = time.perf_counter()
                run("cp", "--reflink=always", str(image), str(copy))
                samples["cp_reflink"].append(time.perf_counter() - began)
                copy.unlink()
                for vol, suffix in (("source", ""), ("idle", "_unmounted")):
                    timed(f"snapshot{suffix}", partial(rt.volumes.snapshot, vol, f"s{i}"))
                    rt.volumes.remove_snapshot(vol, f"s{i}")
                    clone = f"clone-{vol}-{i}"
                    timed(
                        f"clone{suffix}", partial(rt.volumes.create, clone, "loop", {"from": vol})
                    )
                    rt.volumes.remove(clone)

            for _ in range(2):
                one_round()
            samples = {key: [] for key in samples}
            benchmark.pedantic(one_round, rounds=SNAPSHOT_ROUNDS, iterations=1)
            rt.volumes.unmount("source", "bench")
            for vol in ("source", "idle"):
                rt.volumes.remove(vol)
    times = medians(samples)
    report(
        benchmark,
        "snapshot and clone of a 1 GiB volume holding 64 MiB, xfs reflink pool",
        {f"{key}_median_ms": round(value, 2) for key, value in times.items()}
        | {
            f"{key}_ratio": round(value / times["cp_reflink"], 2)
            for key, value in times.items()
            if key != "cp_reflink"
        },
    )
