"""What ``cargohold run`` imports: for a short container, start-up is most of its time."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.core import Runtime

from ..test_startup_imports import NEVER_AT_START, imported_by
from .conftest import IMAGE, cli, needs_busybox

pytestmark = pytest.mark.root

# Each was imported by every run once; none is needed to run an unpacked one-layer image.
NOT_FOR_A_RUN = {
    "logging",
    "socket",
    "hashlib",
    "tempfile",
    "csv",
    "subprocess",
    "cargohold.plugins.docker.client",
    "cargohold.core.images.ingest",
    "cargohold.drivers.snapshotters.copy",
    "cargohold.drivers.snapshotters.btrfs",  # overlay holds the images: no probe of btrfs
}


def test_a_run_imports_only_what_it_uses(rt: Runtime, state_dir: Path) -> None:
    needs_busybox()
    # the first run of an image unpacks its layers (tarfile, hashlib), and the overlay
    # probe is remembered once the snapshots directory exists (tempfile): later runs do neither
    for _ in range(2):
        assert cli(state_dir, "run", "--rm", IMAGE, "true").returncode == 0
    modules = imported_by(["run", "--rm", "--network", "none", IMAGE, "true"], state_dir)
    assert "cargohold.core.containers.supervisor" in modules  # it did run a container
    assert modules & (NEVER_AT_START | NOT_FOR_A_RUN) == set()
    assert rt.containers.list(all=True) == []  # and --rm removed it
