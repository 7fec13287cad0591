"""One ``cargohold`` namespace from three source roots, installed for real.

A ``cargohold/__init__.py`` in any root would make that root the whole
package and hide the other two; the installed wheel must carry all three.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = ("core", "plugins", "drivers")


class FreshVenv:
    """A new virtual environment that sees nothing of the development one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
        self.python = path / "bin" / "python"

    def install(self, *requirements: str, find_links: tuple[Path, ...]) -> None:
        # the development environment's pip installs into this one (--python): no ensurepip
        links = [arg for link in find_links for arg in ("--find-links", str(link))]
        pip = [sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q"]
        result = subprocess.run(
            [*pip, "--no-index", *links, *requirements],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.fail(f"pip install {' '.join(requirements)} failed:\n{result.stderr}")

    def run(
        self, program: str, *args: str, state_dir: Path, **env: str
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CARGOHOLD_", "PYTHON"))}
        result = subprocess.run(
            [str(self.path / "bin" / program), *args],
            capture_output=True,
            text=True,
            env={**clean, "CARGOHOLD_STATE_DIR": str(state_dir), **env},
            cwd=self.path,  # not the checkout: nothing importable by accident
            timeout=300,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def package_files(self, state_dir: Path) -> list[str]:
        """Where this environment imports the three packages from, in SOURCE_ROOTS order."""
        where = self.run(
            "python",
            "-c",
            "import json, cargohold.core, cargohold.plugins, cargohold.drivers as d;"
            "print(json.dumps([m.__file__ for m in (cargohold.core, cargohold.plugins, d)]))",
            state_dir=state_dir,
        )
        files: list[str] = json.loads(where.stdout)
        return files


def source_modules(root: str) -> set[str]:
    base = ROOT / root
    return {str(p.relative_to(base)) for p in (base / "cargohold").rglob("*.py")}


def test_no_namespace_init_in_any_root() -> None:
    for root in SOURCE_ROOTS:
        assert (ROOT / root / "cargohold" / root).is_dir()
        assert not (ROOT / root / "cargohold" / "__init__.py").exists(), root
        assert (ROOT / root / "cargohold" / root / "__init__.py").is_file()
    top_level = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert top_level <= {"tests"}  # no generic top-level import names such as `core`


def test_development_install_imports_from_the_three_roots() -> None:
    import cargohold.core
    import cargohold.drivers
    import cargohold.plugins

    for module, root in zip(
        (cargohold.core, cargohold.plugins, cargohold.drivers), SOURCE_ROOTS, strict=True
    ):
        assert Path(module.__file__ or "").is_relative_to(ROOT / root)


def test_wheel_carries_all_three_roots(wheelhouse: Path) -> None:
    (wheel,) = wheelhouse.glob("cargohold-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cargohold/__init__.py" not in names
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"cargohold"}  # nothing else lands in site-packages
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "Requires-Python: >=3.11" in zipfile.ZipFile(wheel).read(metadata).decode()
    for root in SOURCE_ROOTS:
        missing = source_modules(root) - names
        assert not missing, f"{root}/ files missing from the wheel: {sorted(missing)}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[console_scripts]\ncargohold = cargohold.core.cli:main" in text
    assert "[cargohold]" in text and "cargohold.plugins.volume_drivers" in text


def test_non_editable_install_works(tmp_path: Path, wheelhouse: Path) -> None:
    venv = FreshVenv(tmp_path / "venv")
    venv.install("cargohold", find_links=(wheelhouse,))
    state = tmp_path / "state"

    for file in venv.package_files(state):
        assert Path(file).is_relative_to(venv.path), file  # installed, not the checkout

    assert "0.1.0" in venv.run("cargohold", "--version", state_dir=state).stdout
    plugins = venv.run("cargohold", "plugin", "ls", state_dir=state).stdout
    assert "local, bind" in plugins
    venv.run("cargohold", "volume", "create", "--label", "a=b", "v1", state_dir=state)
    assert venv.run("cargohold", "volume", "ls", "-q", state_dir=state).stdout == "v1\n"
    assert (state / "drivers" / "local" / "v1" / "_data").is_dir()


def test_editable_install_works(tmp_path: Path, wheelhouse: Path) -> None:
    """What ``pip install -e .`` installs: hatchling's editable wheel (the PEP 660 hook)."""
    editable = tmp_path / "editable"
    build = "import sys; from hatchling.build import build_editable; build_editable(sys.argv[1])"
    built = subprocess.run(
        [sys.executable, "-c", build, str(editable)], cwd=ROOT, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = editable.glob("cargohold-*.whl")
    venv = FreshVenv(tmp_path / "venv")
    venv.install(str(wheel), find_links=(wheelhouse,))
    state = tmp_path / "state"

    for file, root in zip(venv.package_files(state), SOURCE_ROOTS, strict=True):
        assert Path(file).is_relative_to(ROOT / root), file  # the checkout itself

    assert "0.1.0" in venv.run("cargohold", "--version", state_dir=state).stdout
    assert "local, bind" in venv.run("cargohold", "plugin", "ls", state_dir=state).stdout
    venv.run("cargohold", "volume", "create", "v1", state_dir=state)
    assert (state / "drivers" / "local" / "v1" / "_data").is_dir()
