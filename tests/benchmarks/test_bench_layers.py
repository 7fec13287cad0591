"""The layers workload of ``cargohold bench`` on the overlay and copy snapshotters.

Layer build, assembly of a root on 10 layers, first-write copy-up and container
start, each against a bare overlay mount measured in the same rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.core.testing.bench import WORKLOADS, Case
from cargohold.plugins.bench.targets import LayerTarget

from .test_bench_lifecycle import record

pytestmark = [pytest.mark.benchmark, pytest.mark.root]


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_layers(benchmark: Any, runtime: Runtime, tmp_path: Path, snapshotter: str) -> None:
    target = LayerTarget(snapshotter, runtime.snapshotters.get(snapshotter))
    case = Case(workdir=tmp_path / "work", seconds=20, rounds=4)
    figures = benchmark.pedantic(
        WORKLOADS["layers"].run, args=(target, case), rounds=1, iterations=1
    )
    record(benchmark, figures)
    assert runtime.snapshotters.get(snapshotter).walk() == []  # the chain is gone
