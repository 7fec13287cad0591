"""The skip policy itself: CI must fail, not skip, what it cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SKIPPING = """
import pytest

@pytest.fixture
def engine():
    pytest.skip("no engine here")

def test_skips_in_its_body():
    pytest.skip("not today")

def test_skips_in_a_fixture(engine):
    pass

@pytest.mark.skip(reason="marked")
def test_marked():
    pass

def test_passes():
    pass
"""


def run_pytest(tmp_path: Path, no_skip: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "CARGOHOLD_NO_SKIP"}
    env["PYTHONPATH"] = str(REPO)
    if no_skip:
        env["CARGOHOLD_NO_SKIP"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.noskip", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_skips_are_failures_under_no_skip(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, no_skip=True)
    assert result.returncode == 1, result.stdout
    # a skip in the body fails the test; one in setup (fixture, mark) errors it
    assert "1 failed, 1 passed, 2 errors" in result.stdout
    assert (
        "skipped under CARGOHOLD_NO_SKIP=1 (CI must run it): Skipped: no engine here"
        in result.stdout
    )


def test_skips_stay_skips_locally(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, no_skip=False)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped" in result.stdout


@pytest.mark.root
def test_root_marker_runs_as_root() -> None:
    # Under CI (root) this runs; elsewhere the marker skips it with its reason.
    assert os.geteuid() == 0
