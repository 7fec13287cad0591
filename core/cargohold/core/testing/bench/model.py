"""What every workload shares: targets, figures with their floors, the time budget.

A workload measures a target and, in the same rounds, the floor of each figure:
the least the machine can do for the same work. A figure is reported as a ratio
to that floor, because the machines this runs on are shared and noisy (the same
job varies 2-3x between runs) while the ratio of two things measured side by
side is stable.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

Better = Literal["lower", "higher"]


@runtime_checkable
class VolumeTarget(Protocol):
    """Anything with a volume driver's life cycle: a driver, a served driver, a plugin."""

    name: str

    def create(self, volume: str) -> None: ...
    def mount(self, volume: str, mount_id: str) -> Path: ...
    def unmount(self, volume: str, mount_id: str) -> None: ...
    def remove(self, volume: str) -> None: ...


@runtime_checkable
class LayerTarget(Protocol):
    """A copy-on-write snapshotter: layers on layers, mounted where asked."""

    name: str

    def prepare(self, key: str, parent: str | None) -> None: ...
    def mount(self, key: str, target: Path) -> None: ...
    def unmount(self, target: Path) -> None: ...
    def commit(self, name: str, key: str) -> None: ...
    def remove(self, key: str) -> None: ...


@dataclass
class Stats:
    """pytest-benchmark's statistics of one figure's samples (in the figure's unit)."""

    min: float
    max: float
    mean: float
    stddev: float
    median: float
    q1: float
    q3: float
    p99: float
    rounds: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        ordered = sorted(samples)
        if not ordered:
            nan = math.nan
            return cls(nan, nan, nan, nan, nan, nan, nan, nan, 0)
        if len(ordered) == 1:
            only = ordered[0]
            return cls(only, only, only, 0.0, only, only, only, only, 1)
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        return cls(
            min=ordered[0],
            max=ordered[-1],
            mean=statistics.fmean(ordered),
            stddev=statistics.stdev(ordered),
            median=statistics.median(ordered),
            q1=cuts[24],
            q3=cuts[74],
            p99=cuts[98],
            rounds=len(ordered),
        )

    def pick(self, which: str) -> float:
        """``p50`` (the median), ``p99``, ``min``, ``max`` or ``mean``."""
        return self.median if which == "p50" else float(getattr(self, which))


@dataclass
class Figure:
    """One reported number of one workload on one target, and its floor.

    ``samples`` and ``floor_samples`` are per-round values in ``unit``;
    ``value`` and ``floor`` are the chosen statistic of each (p50 or p99).
    """

    workload: str
    name: str
    unit: str
    better: Better
    value: float
    floor: float
    floor_name: str
    samples: list[float] = field(default_factory=list)
    floor_samples: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ratio(self) -> float:
        """How many times the floor's cost: 1.0 is at the floor, 2.0 twice as slow.

        For latencies that is value / floor, for throughputs floor / value, so
        one rule reads every row: higher is worse.
        """
        if self.error or not (self.value > 0 and self.floor > 0):
            return math.nan
        return self.value / self.floor if self.better == "lower" else self.floor / self.value

    @property
    def stats(self) -> Stats:
        return Stats.of(self.samples)


def figures_from_samples(
    workload: str,
    name: str,
    samples: Sequence[float],
    floor_samples: Sequence[float],
    floor_name: str,
    *,
    unit: str = "s",
    better: Better = "lower",
    which: Iterable[str] = ("p50", "p99"),
    extra: dict[str, Any] | None = None,
) -> list[Figure]:
    """One figure per statistic (``p50``, ``p99``) of paired samples."""
    ours, floor = Stats.of(samples), Stats.of(floor_samples)
    return [
        Figure(
            workload=workload,
            name=f"{name} {stat}",
            unit=unit,
            better=better,
            value=ours.pick(stat),
            floor=floor.pick(stat),
            floor_name=floor_name,
            samples=list(samples),
            floor_samples=list(floor_samples),
            extra=dict(extra or {}),
        )
        for stat in which
    ]


def failed(workload: str, name: str, error: str, unit: str = "s") -> Figure:
    """A figure that could not be measured; reported, never fatal to the run."""
    nan = math.nan
    return Figure(workload, name, unit, "lower", nan, nan, "-", error=error)


class Budget:
    """The time a run may take; each case gets a fair share of what is left."""

    def __init__(self, seconds: float | None) -> None:
        self.started = time.monotonic()
        self.deadline = math.inf if seconds is None else self.started + seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def share(self, cases_left: int) -> float:
        return self.remaining() / max(1, cases_left)


@dataclass
class Case:
    """What one workload on one target may use: a scratch directory, its time, knobs."""

    workdir: Path
    seconds: float = math.inf
    rounds: int = 50
    clients: int = 4
    size_mb: int = 64
    advance: Callable[[float], None] = lambda fraction: None
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began
