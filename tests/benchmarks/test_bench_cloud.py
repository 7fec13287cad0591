"""The cloud workload of ``cargohold bench`` on the s3 driver against a moto server,
with ``rclone copy`` to the same server as the floor, in the same rounds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.testing.bench import WORKLOADS, Case
from cargohold.plugins.bench.targets import VolumeTarget

from ..cloud.conftest import S3_KEY, S3_SECRET, free_port, s3_client, wait_for_port
from .test_bench_lifecycle import record

pytestmark = [pytest.mark.benchmark]

BUCKET = "chbench"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    pytest.importorskip("moto.server", reason="pip install 'moto[server]'")
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_cloud_s3(
    benchmark: Any, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CH_BENCH_KEY", S3_KEY)
    monkeypatch.setenv("CH_BENCH_SECRET", S3_SECRET)
    options = {
        "bucket": BUCKET,
        "endpoint_url": moto_endpoint,
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
