"""The arrays workload of ``cargohold bench`` on the loop and btrfs arrays: create+mount,
snapshot and clone, against the loop or btrfs subvolume commands an operator would type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.testing.bench import WORKLOADS, Case
from cargohold.core.testing.bench.floors import unmount_everything_under
from cargohold.plugins.bench.targets import VolumeTarget

from .test_bench_lifecycle import record

pytestmark = [pytest.mark.benchmark, pytest.mark.root]

FLOOR = {"loop": "loop commands", "btrfs": "btrfs subvolume commands"}


@pytest.mark.parametrize("driver", ["loop", "btrfs"])
def test_arrays(benchmark: Any, tmp_path: Path, driver: str) -> None:
    try:
        with Runtime(tmp_path / "state") as runtime:
            target = VolumeTarget(driver, "driver", runtime.volumes, driver, {"size": "64m"})
            case = Case(workdir=tmp_path / "work", seconds=20, rounds=4)
            figures = benchmark.pedantic(
                WORKLOADS["arrays"].run, args=(target, case), rounds=1, iterations=1
            )
            assert runtime.volumes.list() == []
    finally:
        # the btrfs array keeps its pool mounted for the driver's life, and beyond
        unmount_everything_under(tmp_path)
    record(benchmark, figures)
    assert {f.floor_name for f in figures} == {FLOOR[driver]}
