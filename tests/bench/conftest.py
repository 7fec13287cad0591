"""Running ``cargohold bench`` as a user does, in a fresh process, on private state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CARGOHOLD = str(Path(sys.executable).with_name("cargohold"))


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def bench(*args: str, state: Path, timeout: float = 300) -> Ran:
    """``cargohold --state-dir STATE bench ARGS`` (no progress bar: not a terminal)."""
    env = {**os.environ, "COLUMNS": "200"}
    began = time.monotonic()
    done = subprocess.run(
        [CARGOHOLD, "--state-dir", str(state), "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


def leftovers(work: Path) -> list[str]:
    """Mounts under ``work`` a run left behind."""
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split()[1] for line in lines if line.split()[1].startswith(str(work))]
