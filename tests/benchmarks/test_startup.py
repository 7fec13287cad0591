"""How long ``cargohold volume ls`` takes against the libraries it cannot do without.

Every command pays Python's start, its plugins' imports and plugin loading
before any work; issue 4 (``run`` faster than ``docker run``) is mostly won
or lost here. The floor is a fresh interpreter importing only click, pluggy
and sqlite3, which any cargohold command needs; rounds alternate so drift
hits both alike. Both run with bytecode caches, as an installed copy does.
``extra_info`` holds both medians (ms) and the ratio command / floor (lower
is better; a plugin importing something heavy at its top shows here).
Nothing is asserted about time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from .paired import paired_medians

pytestmark = pytest.mark.benchmark

ROUNDS = 20
CLI = str(Path(sys.executable).with_name("cargohold"))


def test_volume_ls_start_up(benchmark: Any, tmp_path: Path) -> None:
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(tmp_path / "state")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    ours = [CLI, "volume", "ls"]
    floor = [sys.executable, "-c", "import click, pluggy, sqlite3"]
    ours_ms, floor_ms = paired_medians(
        benchmark, (ours, env), (floor, env), rounds=ROUNDS, timeout=60
    )
    info = {
        "volume_ls_ms": round(ours_ms, 1),
        "floor_ms": round(floor_ms, 1),
        "ratio_volume_ls_to_floor": round(ours_ms / floor_ms, 3),
    }
    benchmark.extra_info.update(info)
    print(f"\nvolume ls start-up: {info}")
