"""Where state lives by default: /var/lib/cargohold as root, the XDG state dir otherwise.

The non-root cases run the real ``cargohold`` command as the ``nobody`` user,
so the choice is made on a real effective user id, not a patched one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core.state.paths import default_state_dir

CARGOHOLD = Path(sys.executable).parent / "cargohold"


@pytest.mark.root
def test_root_defaults_to_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARGOHOLD_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "/nowhere")  # root ignores it
    assert default_state_dir() == Path("/var/lib/cargohold")
    monkeypatch.setenv("CARGOHOLD_STATE_DIR", "relative/state")
    assert default_state_dir() == Path.cwd() / "relative" / "state"


@pytest.fixture
def home() -> Iterator[Path]:
    """A home directory the ``nobody`` user can write (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="cargohold-home-"))
    try:
        path.chmod(0o777)
        yield path
    finally:
        shutil.rmtree(path)


def as_nobody(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    nobody = pwd.getpwnam("nobody")
    # setpriv (util-linux) rather than subprocess's user=, which on the development
    # machine could not exec the virtual environment's interpreter
    drop = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    result = subprocess.run(
        [*drop, str(CARGOHOLD), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env},
        cwd=home,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.root
def test_non_root_uses_the_xdg_state_dir(home: Path) -> None:
    as_nobody(home, "volume", "create", "v1")
    default = home / ".local" / "state" / "cargohold"
    assert (default / "state.db").is_file()
    assert (default / "drivers" / "local" / "v1" / "_data").is_dir()
    assert default.stat().st_uid == pwd.getpwnam("nobody").pw_uid

    xdg = home / "xdg"
    as_nobody(home, "volume", "create", "v2", XDG_STATE_HOME=str(xdg))
    assert (xdg / "cargohold" / "drivers" / "local" / "v2" / "_data").is_dir()
    listed = as_nobody(home, "volume", "ls", "-q", XDG_STATE_HOME=str(xdg)).stdout
    assert listed == "v2\n"

    override = home / "override"
    as_nobody(
        home, "volume", "create", "v3", XDG_STATE_HOME=str(xdg), CARGOHOLD_STATE_DIR=str(override)
    )
    assert (override / "drivers" / "local" / "v3" / "_data").is_dir()
    assert as_nobody(home, "volume", "ls", "-q").stdout == "v1\n"
    assert os.listdir(home / "xdg" / "cargohold" / "drivers" / "local") == ["v2"]
