"""``cargohold bench`` on rclone's ``serve docker``, the reference peer, beside ``local``.

The one command of the issue: a side-by-side table, a JSON file and an HTML
report with plots. rclone runs from the fixture of the client's tests, which
kills it and removes its socket and mounts whatever happens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..docker.test_rclone import Rclone, _mounts_under, rclone  # noqa: F401 - a fixture
from .conftest import bench, leftovers


@pytest.mark.root
def test_local_beside_rclone_in_one_command(rclone: Rclone, tmp_path: Path) -> None:  # noqa: F811
    args = ["-d", "local", "-d", rclone.name, "-w", "lifecycle", "-w", "protocol", "-w", "data"]
    args += ["--rounds", "5", "--size", "4", "--time-limit", "45"]
    args += ["--json", str(tmp_path / "out.json"), "--report", str(tmp_path / "report")]
    args += ["--work-dir", str(tmp_path / "work")]
    ran = bench(*args, state=tmp_path / "state")
    assert ran.returncode == 0, ran.stderr

    doc = json.loads((tmp_path / "out.json").read_text())
    by_name = {b["name"]: b["extra_info"] for b in doc["benchmarks"]}
    for target in ("local", rclone.name):
        for figure in ("lifecycle/create p50", "lifecycle/mount p99", "data/seq write+fsync"):
            info = by_name[f"{target}/{figure}"]
            assert "error" not in info, info
            assert info["ratio"] > 0
    # rclone is reached over the protocol: it has the protocol workload, local has not
    assert by_name[f"{rclone.name}/protocol/Get p50"]["floor_name"].startswith("no-op handler")
    assert "local/protocol/Get p50" not in by_name
    assert by_name[f"{rclone.name}/lifecycle/create p50"]["target_kind"] == "plugin"
    # side by side in the table: rows of both targets for the same figure
    table = [line for line in ran.stdout.splitlines() if "seq write+fsync" in line]
    assert any(" local " in line for line in table)
    assert any(f" {rclone.name} " in line for line in table)

    page = (tmp_path / "report" / "index.html").read_text()
    for workload in ("lifecycle", "protocol", "data"):
        assert f'<img src="{workload}.png"' in page
        assert (tmp_path / "report" / f"{workload}.png").stat().st_size > 1000
    assert rclone.name in page

    # nothing left: no volume in rclone, no FUSE mount, no scratch, rclone still answering
    assert _mounts_under(rclone.base) == []
    assert leftovers(tmp_path / "work") == []
    assert list((tmp_path / "work").iterdir()) == []
    assert rclone.process.poll() is None
