"""Shared fixtures. ``CARGOHOLD_NO_SKIP=1`` (set by .ci/run) makes any skip a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime

from .realdocker import (
    DockerEngine,
    build_busybox_image,
    dockerd_missing_reason,
    start_engine,
    stop_engine,
)

NO_SKIP = bool(os.environ.get("CARGOHOLD_NO_SKIP"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CARGOHOLD_NO_SKIP=1 (CI must run it): {reason}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("root") and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root for kernel mounts"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def runtime(state_dir: Path) -> Iterator[Runtime]:
    """A runtime on a private state directory, with the installed plugins."""
    with Runtime(state_dir) as rt:
        yield rt


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private real Docker engine for the session (skips, with the reason, if impossible)."""
    reason = dockerd_missing_reason()
    if reason:
        pytest.skip(reason)
    engine = start_engine()
    try:
        yield engine
    finally:
        stop_engine(engine)


@pytest.fixture(scope="session")
def busybox_image(docker_engine: DockerEngine) -> str:
    """The tag of a tiny busybox image inside `docker_engine`."""
    tag = "cargohold-busybox:test"
    build_busybox_image(docker_engine, tag)
    return tag


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of cargohold, built from this tree as ``pip install .`` would, and its deps.

    Fresh virtual environments install from here with ``--no-index``, so each
    test's install is fast and sees nothing of the development environment.
    """
    house = tmp_path_factory.mktemp("wheelhouse")
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "-w", str(house)]
    built = subprocess.run([*command, f"{root}[testing]"], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"building cargohold's wheels failed:\n{built.stderr}")
    return house
