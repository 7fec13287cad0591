"""One bench run: every workload on every target it applies to, within the time limit.

Cases run one after another (a workload, then each target), each with a fair
share of the time left. A case that fails, or finds no time left, becomes a row
saying so; the run goes on.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargohold.core import CargoholdError, Unavailable
from cargohold.core.testing.bench import WORKLOADS, Budget, Case, Figure, failed
from cargohold.plugins.bench.results import Result
from cargohold.plugins.bench.targets import LayerTarget, Targets, VolumeTarget

if TYPE_CHECKING:
    from cargohold.core import Runtime

PROTOCOL = "protocol"
#: every workload, in the order a run takes them
ALL_WORKLOADS = ("lifecycle", PROTOCOL, "data", "arrays", "cloud", "layers", "concurrent")


@dataclass
class Settings:
    rounds: int = 30
    clients: int = 4
    size_mb: int = 64
    runner: str | None = None  # "fio", "python" or None: fio when installed


Target = VolumeTarget | LayerTarget


def cases(workloads: list[str], targets: Targets) -> list[tuple[str, Target]]:
    """(workload, target) pairs: each workload on the targets of its kind."""
    pairs: list[tuple[str, Target]] = []
    for workload in workloads:
        if workload == PROTOCOL:
            pairs += [(workload, t) for t in targets.volume if t.address is not None]
        elif workload == "arrays":
            pairs += [(workload, t) for t in targets.volume if t.snapshots]
        elif workload == "cloud":
            pairs += [(workload, t) for t in targets.volume if t.cloud]
        elif WORKLOADS[workload].kind == "layers":
            pairs += [(workload, t) for t in targets.layers]
        else:
            pairs += [(workload, t) for t in targets.volume]
    return pairs


def add_default_snapshotter(runtime: Runtime, targets: Targets) -> None:
    """``--workload layers`` without a snapshotter target measures the default one."""
    if not targets.layers:
        name = runtime.snapshotters.default_name()
        targets.layers.append(LayerTarget(f"snapshotter:{name}", runtime.snapshotters.get(name)))


def _one_case(
    workload: str, target: Target, case: Case, targets: Targets, settings: Settings
) -> list[Figure]:
    if workload == PROTOCOL:
        from cargohold.plugins.bench import protocol

        assert isinstance(target, VolumeTarget) and targets.noop is not None
        return protocol.run(target, case, targets.noop)
    if workload == "data":
        from cargohold.core.testing.bench import datapath

        assert isinstance(target, VolumeTarget)
        return datapath.run(target, case, runner=settings.runner)
    return WORKLOADS[workload].run(target, case)


def _advance(
    update: Callable[[str, float], None], label: str, index: int
) -> Callable[[float], None]:
    return lambda fraction: update(label, index + min(1.0, fraction))


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int) -> Iterator[Callable[[str, float], None]]:
    """``update(description, completed)``: rich's progress on stderr, or nothing."""
    if not enabled:
        yield lambda description, completed: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("bench", total=total)

        def update(description: str, completed: float) -> None:
            progress.update(task, description=description, completed=completed)

        yield update


def run(
    workloads: list[str],
    targets: Targets,
    workdir: Path,
    budget: Budget,
    settings: Settings,
    *,
    show_progress: bool = True,
) -> list[Result]:
    todo = cases(workloads, targets)
    results: list[Result] = []
    gone = targets.gone  # targets that stopped answering, and in which workload
    with progress_bar(show_progress, len(todo)) as update:
        for index, (workload, target) in enumerate(todo):
            label = f"{workload} on {target.name}"
            skip = None
            if budget.expired():
                skip = "not run: the time limit was reached"
            elif target.name in gone:
                skip = f"not run: the target stopped answering in {gone[target.name]}"
            if skip is not None:
                results.append(Result(target.name, target.kind, failed(workload, "-", skip)))
                continue
            seconds = budget.share(len(todo) - index)
            case = Case(
                workdir=workdir / f"case{index}",
                seconds=seconds,
                rounds=settings.rounds,
                clients=settings.clients,
                size_mb=settings.size_mb,
                advance=_advance(update, label, index),
            )
            case.workdir.mkdir(parents=True, exist_ok=True)
            update(label, index)
            try:
                figures = _one_case(workload, target, case, targets, settings)
            except (CargoholdError, OSError, subprocess.SubprocessError, RuntimeError) as err:
                figures = [failed(workload, "-", f"{type(err).__name__}: {err}")]
                if isinstance(err, Unavailable):
                    gone[target.name] = workload  # each further call would wait its timeout
            results += [Result(target.name, target.kind, f) for f in figures]
            update(label, index + 1)
    return results


def settings_dict(settings: Settings, workloads: list[str], specs: list[str], limit: Any) -> Any:
    return {
        "targets": specs,
        "workloads": workloads,
        "rounds": settings.rounds,
        "clients": settings.clients,
        "size_mb": settings.size_mb,
        "runner": settings.runner,
        "time_limit": None if limit is None or math.isinf(limit) else limit,
    }


def clean_volumes(runtime: Runtime, targets: Targets) -> None:
    """Remove whatever volumes a failed case left in the private state.

    Volumes of a target that stopped answering stay with it: each call would
    wait out its timeout.
    """
    dead = {t.driver for t in targets.volume if t.name in targets.gone}
    for volume in runtime.volumes.list():
        if volume.driver in dead:
            continue
        with contextlib.suppress(CargoholdError, OSError):
            runtime.volumes.drop_refs(volume.name)
        with contextlib.suppress(CargoholdError, OSError):
            runtime.volumes.remove(volume.name, force=True)
