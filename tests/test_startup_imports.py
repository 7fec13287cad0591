"""Start-up stays cheap: a volume command imports none of the heavy machinery.

Every command loads every plugin module, so one top-level import of Flask or
the container service in any plugin slows every command (issue 4: `cargohold
run` must start faster than `docker run`). This runs real commands in fresh
interpreters and names the modules they must not have imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Heavy, and needed by none of the commands below.
NEVER_AT_START = {
    "flask",
    "httptools",
    "werkzeug",
    "ssl",
    "http.client",
    "importlib.metadata",  # the entry-point scan reads dist-info folders itself
    "email",
    "tarfile",
    "cryptography",
}
# The container and image machinery: for container and image commands only.
NOT_FOR_VOLUMES = {
    "cargohold.core.containers.service",
    "cargohold.core.images.store",
    "cargohold.core.images.archives",
    "cargohold.core.snapshots.service",
    "cargohold.core.containers.runner",
    "cargohold.core.api.container_mounts",
    "cargohold.plugins.docker.plugin_checks",
}

PROBE = """
import json, sys
from cargohold.core.cli import run_cli
run_cli(sys.argv[1:])
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(args: list[str], state: Path) -> set[str]:
    env = {**os.environ, "CARGOHOLD_STATE_DIR": str(state)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["volume", "ls"], ["volume", "create", "v1"], ["plugin", "ls"]])
def test_volume_commands_import_no_heavy_module(args: list[str], tmp_path: Path) -> None:
    modules = imported_by(args, tmp_path / "state")
    assert "cargohold.plugins.docker.check" in modules  # every plugin was loaded
    assert modules & (NEVER_AT_START | NOT_FOR_VOLUMES) == set()


def test_image_listing_imports_no_archive_or_server_code(tmp_path: Path) -> None:
    modules = imported_by(["image", "ls"], tmp_path / "state")
    assert "cargohold.core.images.store" in modules
    assert modules & (NEVER_AT_START | {"cargohold.core.images.archives"}) == set()
