"""Shared fixtures; the skip policy lives in noskip.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime

# conftest hooks are found by name: these carry the skip policy
from .noskip import pytest_collection_modifyitems, pytest_runtest_makereport  # noqa: F401
from .realdocker import (
    DockerEngine,
    build_busybox_image,
    dockerd_missing_reason,
    start_engine,
    stop_engine,
)


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
