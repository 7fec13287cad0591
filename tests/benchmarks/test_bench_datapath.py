"""The data-path workload of ``cargohold bench`` through a local volume's mountpoint.

Both runners: fio (when installed; ``.ci/setup`` installs it) and the built-in
Python runner, on small files. Figures (MB/s, IOPS), floors (a plain directory
on the same filesystem) and the tmpfs ceiling go to ``extra_info``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.testing.bench import Case, datapath
from cargohold.plugins.bench.targets import VolumeTarget

from .test_bench_lifecycle import record

pytestmark = [pytest.mark.benchmark, pytest.mark.root]


@pytest.mark.parametrize("runner", ["fio", "python"])
def test_data_path_local(benchmark: Any, runtime: Runtime, tmp_path: Path, runner: str) -> None:
    if runner == "fio" and shutil.which("fio") is None:
        pytest.skip("fio is not installed (bash .ci/setup installs it)")
    target = VolumeTarget("local", "driver", runtime.volumes, "local")
    case = Case(workdir=tmp_path / "work", seconds=15, size_mb=8)
    figures = benchmark.pedantic(
        datapath.run, args=(target, case), kwargs={"runner": runner}, rounds=1, iterations=1
    )
    record(benchmark, figures)
    assert {f.extra["runner"] for f in figures} == {runner}
    assert [f.name for f in figures] == [j.name for j in datapath.jobs(8)]
