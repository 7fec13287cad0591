"""The lifecycle workloads of ``cargohold bench`` on the local driver, for CI's record.

Short rounds; the figures (p50/p99 of create, mount, unmount, remove and whole
cycles, alone and with concurrent clients), their floors (mkdir, bind mount,
umount, rmdir) and ratios go to ``extra_info``. Nothing is asserted about time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.testing.bench import WORKLOADS, Case, Figure
from cargohold.plugins.bench.targets import VolumeTarget

pytestmark = [pytest.mark.benchmark, pytest.mark.root]


def record(benchmark: Any, figures: list[Figure]) -> None:
    """Each figure's value, floor and ratio in extra_info, and printed."""
    for f in figures:
        assert f.error is None, f"{f.name}: {f.error}"
        benchmark.extra_info[f.name] = {
            "value": f.value,
            "floor": f.floor,
            "ratio": round(f.ratio, 3),
            "unit": f.unit,
        }
        print(f"{f.workload:>10} {f.name:<24} {f.value:12.6g} {f.unit:<5} ratio {f.ratio:.2f}x")


@pytest.mark.parametrize("workload", ["lifecycle", "concurrent"])
def test_lifecycle_local(benchmark: Any, runtime: Runtime, tmp_path: Path, workload: str) -> None:
    target = VolumeTarget("local", "driver", runtime.volumes, "local")
    case = Case(workdir=tmp_path / "work", seconds=20, rounds=10, clients=2)
    figures = benchmark.pedantic(
        WORKLOADS[workload].run, args=(target, case), rounds=1, iterations=1
    )
    record(benchmark, figures)
    assert runtime.volumes.list() == []  # every volume the workload made is gone
