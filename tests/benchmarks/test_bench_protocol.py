"""The protocol workload of ``cargohold bench``: the local driver served over the Docker
protocol by a child process, Get against a no-op handler on the same stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargohold.core.testing.bench import Case
from cargohold.plugins.bench import protocol, targets

from .test_bench_lifecycle import record

pytestmark = [pytest.mark.benchmark, pytest.mark.root]


def test_served_local_get(benchmark: Any, tmp_path: Path) -> None:
    with targets.resolve(["served:local"], tmp_path, {}) as (_, found):
        (target,) = found.volume
        assert found.noop is not None
        case = Case(workdir=tmp_path / "work", seconds=10, rounds=30)
        figures = benchmark.pedantic(
            protocol.run, args=(target, case, found.noop), rounds=1, iterations=1
        )
    record(benchmark, figures)
    assert [f.name for f in figures] == ["Get p50", "Get p99"]
