"""Benchmark workloads and the machine's floors, for any driver-like target.

A workload takes a target (`VolumeTarget`: a driver's life cycle; `LayerTarget`: a
snapshotter) and a `Case` (scratch directory, time, rounds) and returns `Figure`
objects, each measured against its floor in the same rounds. ``cargohold bench``
runs them from the command line; the pytest-benchmark cases under
``tests/benchmarks/`` run them in CI.

Workloads are registered in `WORKLOADS` by name with the kind of target they
take; a new one is one module with ``run(target, case)`` and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cargohold.core.testing.bench.model import (
    Budget,
    Case,
    Figure,
    LayerTarget,
    Stats,
    VolumeTarget,
    failed,
    figures_from_samples,
)

TargetKind = Literal["volume", "layers"]


@dataclass(frozen=True)
class Workload:
    """A named workload: the kind of target it measures and how."""

    name: str
    kind: TargetKind
    summary: str
    module: str  # imported when the workload runs: fio, threads and mounts only then
    function: str = "run"

    def run(self, target: Any, case: Case) -> list[Figure]:
        import importlib

        module = importlib.import_module(self.module)
        runner: Callable[[Any, Case], list[Figure]] = getattr(module, self.function)
        return runner(target, case)


_HERE = "cargohold.core.testing.bench"
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("lifecycle", "volume", "create/mount/unmount/remove latency, one client",
                 f"{_HERE}.lifecycle"),
        Workload("concurrent", "volume", "whole life cycles by N clients at once",
                 f"{_HERE}.lifecycle", "run_concurrent"),
        Workload("data", "volume", "fio or Python jobs through the mountpoint",
                 f"{_HERE}.datapath"),
        Workload("arrays", "volume", "create+mount, snapshot, clone (drivers with snapshots)",
                 f"{_HERE}.arrays"),
        Workload("cloud", "volume", "fetch and write-back, a large file and small ones",
                 f"{_HERE}.cloud"),
        Workload("layers", "layers", "layer build, assembly, copy-up, container start",
                 f"{_HERE}.layers"),
    )
}  # fmt: skip

__all__ = [
    "WORKLOADS",
    "Budget",
    "Case",
    "Figure",
    "LayerTarget",
    "Stats",
    "TargetKind",
    "VolumeTarget",
    "Workload",
    "failed",
    "figures_from_samples",
]
