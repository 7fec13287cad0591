"""The example third-party plugin (docs/example-plugin), installed as its users would.

Its wheel is built from its own ``pyproject.toml`` (in a copy, so nothing
outside its folder can help), installed with cargohold into a fresh virtual
environment, and driven through that environment's ``cargohold`` command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_layout import ROOT, FreshVenv

EXAMPLE = ROOT / "docs" / "example-plugin"


@pytest.fixture(scope="module")
def example_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> FreshVenv:
    work = tmp_path_factory.mktemp("example")
    source = work / "example-plugin"
    shutil.copytree(EXAMPLE, source)
    wheels = work / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    venv = FreshVenv(work / "venv")
    venv.install("cargohold-memo[test]", find_links=(wheelhouse, wheels))
    return venv


def test_plugin_is_listed_with_its_distribution(example_venv: FreshVenv, tmp_path: Path) -> None:
    out = example_venv.run("cargohold", "plugin", "ls", "--format", "json", state_dir=tmp_path)
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["memo"] == {
        "name": "memo",
        "distribution": "cargohold-memo 1.0.0",
        "drivers": ["memo"],
    }
    assert "local" in plugins["volume-drivers"]["drivers"]  # cargohold's own still there
    table = example_venv.run("cargohold", "plugin", "ls", state_dir=tmp_path).stdout
    assert any(
        line.split() == ["memo", "cargohold-memo", "1.0.0", "memo"] for line in table.split("\n")
    )

    # the autoload switch turns third-party plugins off, cargohold's own stay
    off = example_venv.run(
        "cargohold", "plugin", "ls", state_dir=tmp_path, CARGOHOLD_DISABLE_PLUGIN_AUTOLOAD="1"
    )
    assert "memo" not in off.stdout and "volume-drivers" in off.stdout


def test_driver_works_through_the_cli(example_venv: FreshVenv, tmp_path: Path) -> None:
    def cargohold(*args: str) -> str:
        return example_venv.run("cargohold", *args, state_dir=tmp_path).stdout

    assert "note" in cargohold("volume", "create", "-d", "memo", "-o", "help")
    assert cargohold("volume", "create", "-d", "memo", "-o", "note=build cache", "cache") == (
        "cache\n"
    )
    assert cargohold("volume", "ls").split("\n")[1].split() == ["memo", "cache"]
    (view,) = json.loads(cargohold("volume", "inspect", "cache"))
    assert view["Driver"] == "memo"
    assert view["Options"] == {"note": "build cache"}
    assert view["Status"] == {"memo": "build cache"}
    data = Path(view["Mountpoint"])
    assert (data / "MEMO").read_text() == "build cache\n"
    assert data.is_relative_to(tmp_path / "drivers" / "memo")

    assert cargohold("volume", "rm", "cache") == "cache\n"
    assert cargohold("volume", "ls", "-q") == ""
    assert not data.exists()


def test_conformance_suite_passes_on_it(example_venv: FreshVenv, tmp_path: Path) -> None:
    copy = example_venv.path.parent / "example-plugin"  # its own folder is its rootdir
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(copy)]
    result = subprocess.run(
        [str(example_venv.python), *pytest_args, str(copy / "tests")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_driver_check_command_passes_on_it(example_venv: FreshVenv, tmp_path: Path) -> None:
    out = example_venv.run("cargohold", "driver", "check", "-v", "memo", state_dir=tmp_path).stdout
    assert "memo" in out and "fail" not in out.lower()
    # the checks run on a private state directory: the user's has no volume left behind
    assert example_venv.run("cargohold", "volume", "ls", "-q", state_dir=tmp_path).stdout == ""
