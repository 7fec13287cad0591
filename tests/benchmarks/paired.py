"""Two commands timed in alternating rounds, so the machine's drift hits both alike."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

Command = tuple[list[str], dict[str, str]]  # argv and its environment


def timed(command: Command, timeout: float) -> float:
    argv, env = command
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - began


def paired_medians(
    benchmark: Any, ours: Command, floor: Command, rounds: int, timeout: float
) -> tuple[float, float]:
    """Median milliseconds of ``ours`` and ``floor``, after two warm-up runs of each
    (bytecode and page caches); each round runs the floor first."""
    for _ in range(2):
        timed(ours, timeout)
        timed(floor, timeout)
    ours_times: list[float] = []
    floor_times: list[float] = []

    def one_round() -> None:
        floor_times.append(timed(floor, timeout))
        ours_times.append(timed(ours, timeout))

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return statistics.median(ours_times) * 1000, statistics.median(floor_times) * 1000
