"""The cloud workload of ``cargohold bench`` on the s3 driver against a moto server,
with ``rclone copy`` to the same server as the floor, in the same rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.testing.bench import WORKLOADS, Case
from cargohold.plugins.bench.targets import VolumeTarget

from ..cloud.conftest import S3_KEY, S3_SECRET
from .conftest import BUCKET
from .test_bench_lifecycle import record

pytestmark = [pytest.mark.benchmark]


def test_cloud_s3(
    benchmark: Any, moto_process: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CH_BENCH_KEY", S3_KEY)
    monkeypatch.setenv("CH_BENCH_SECRET", S3_SECRET)
    options = {
        "bucket": BUCKET,
        "endpoint_url": moto_process,
        "region": "us-east-1",
        "access_key_id": "env:CH_BENCH_KEY",
        "secret_access_key": "env:CH_BENCH_SECRET",
    }
    with Runtime(tmp_path / "state") as runtime:
        target = VolumeTarget("s3", "driver", runtime.volumes, "s3", options, cloud=True)
        case = Case(workdir=tmp_path / "work", seconds=60, rounds=2, size_mb=8)
        figures = benchmark.pedantic(
            WORKLOADS["cloud"].run, args=(target, case), rounds=1, iterations=1
        )
        record(benchmark, figures)
        assert runtime.volumes.list() == []
    assert [f.name for f in figures] == [
        "write-back 1 large file",
        "fetch 1 large file",
        "write-back 200 small files",
        "fetch 200 small files",
    ]
    assert {f.floor_name for f in figures} == {"rclone copy (S3)"}
