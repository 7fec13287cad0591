"""Results in pytest-benchmark's JSON layout, and the comparison with an earlier run.

Each (target, workload, figure) is one entry of ``benchmarks``: ``stats`` (min,
median, max, mean, stddev, quartiles, rounds) are of the target's samples in
the figure's unit (``extra_info.unit``: seconds for latencies, as
pytest-benchmark, MB/s or IOPS for throughputs); ``extra_info`` holds the
figure, its floor, the floor's stats and the ratio. ``--compare`` matches
entries by ``name`` and judges the change of the *ratio*: absolute figures
drift with the machine's load, ratios to floors measured alongside do not.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargohold.core import InvalidArgument
from cargohold.core.testing.bench import Figure, Stats

VERSION = "cargohold-bench/1"


@dataclass
class Result:
    """One figure of one target."""

    target: str
    kind: str
    figure: Figure

    @property
    def name(self) -> str:
        return f"{self.target}/{self.figure.workload}/{self.figure.name}"


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 9)


def _stats(stats: Stats) -> dict[str, Any]:
    iqr = stats.q3 - stats.q1
    return {
        "min": _finite(stats.min),
        "max": _finite(stats.max),
        "mean": _finite(stats.mean),
        "stddev": _finite(stats.stddev),
        "rounds": stats.rounds,
        "median": _finite(stats.median),
        "iqr": _finite(iqr),
        "q1": _finite(stats.q1),
        "q3": _finite(stats.q3),
        "p99": _finite(stats.p99),
        "iqr_outliers": 0,
        "stddev_outliers": 0,
        "outliers": "0;0",
        "ld15iqr": _finite(stats.min),
        "hd15iqr": _finite(stats.max),
        "ops": _finite(1 / stats.mean) if stats.mean and stats.mean > 0 else None,
        "total": _finite(stats.mean * stats.rounds) if stats.rounds else None,
        "iterations": 1,
    }


def _fio_version() -> str | None:
    if shutil.which("fio") is None:
        return None
    done = subprocess.run(["fio", "--version"], capture_output=True, text=True)
    return done.stdout.strip() or None


def machine_info(workdir_fs: str) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "node": uname.node,
        "processor": uname.processor,
        "machine": uname.machine,
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "release": uname.release,
        "system": uname.system,
        "cpu": {"count": os.cpu_count()},
        "fio": _fio_version(),
        "workdir_filesystem": workdir_fs,
    }


def entry(result: Result) -> dict[str, Any]:
    f = result.figure
    extra: dict[str, Any] = {
        "target": result.target,
        "target_kind": result.kind,
        "workload": f.workload,
        "figure": f.name,
        "unit": f.unit,
        "better": f.better,
        "value": _finite(f.value),
        "floor": _finite(f.floor),
        "floor_name": f.floor_name,
        "ratio": _finite(f.ratio),
        "floor_stats": _stats(Stats.of(f.floor_samples)),
        **f.extra,
    }
    if f.error:
        extra["error"] = f.error
    return {
        "group": f.workload,
        "name": result.name,
        "fullname": f"cargohold bench::{result.target}::{f.workload}::{f.name}",
        "params": {"target": result.target, "workload": f.workload, "figure": f.name},
        "param": f"{result.target}-{f.workload}-{f.name}",
        "extra_info": extra,
        "options": {"timer": "perf_counter", "min_rounds": 1, "warmup": False},
        "stats": _stats(f.stats),
    }


def document(results: list[Result], workdir_fs: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine_info": machine_info(workdir_fs),
        "commit_info": {},
        "benchmarks": [entry(r) for r in results],
        "datetime": datetime.datetime.now(datetime.UTC).isoformat(),
        "version": VERSION,
        "settings": settings,
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InvalidArgument(f"--compare {path}: cannot read it as JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise InvalidArgument(f"--compare {path}: no 'benchmarks' list (not a bench JSON file)")
    return doc


@dataclass
class Change:
    """A case present in both runs: its ratios and value, then and now."""

    name: str
    old_ratio: float | None
    new_ratio: float | None
    old_value: float | None
    new_value: float | None
    unit: str

    @property
    def percent(self) -> float | None:
        """Change of the ratio in percent; positive is worse (further from the floor)."""
        if not self.old_ratio or self.new_ratio is None:
            return None
        return (self.new_ratio - self.old_ratio) / self.old_ratio * 100


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[Change], list[str]]:
    """Changes of every case in both, and the names only in the new run."""
    before = {b.get("name"): b.get("extra_info", {}) for b in old["benchmarks"]}
    changes: list[Change] = []
    fresh: list[str] = []
    for bench in new["benchmarks"]:
        info = bench["extra_info"]
        then = before.get(bench["name"])
        if then is None:
            fresh.append(bench["name"])
            continue
        changes.append(
            Change(
                bench["name"],
                then.get("ratio"),
                info.get("ratio"),
                then.get("value"),
                info.get("value"),
                info.get("unit", ""),
            )
        )
    return changes, fresh


def over(changes: list[Change], percent: float) -> list[Change]:
    """The cases whose ratio got worse by more than ``percent``."""
    return [c for c in changes if c.percent is not None and c.percent > percent]
