"""Shared options: sync_interval flushes while mounted; uid/gid/mode map fetched files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import InvalidArgument, Runtime, hookimpl

from .conftest import Remote


def test_sync_interval_writes_back_while_mounted(
    s3_remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    vols = cloud_runtime.volumes
    vols.create("ticking", "s3", s3_remote.opts(prefix, sync_interval="1"))
    path = vols.mount("ticking", "m")
    (path / "live.txt").write_bytes(b"written while mounted")
    deadline = time.monotonic() + 30
    while s3_remote.get(f"{prefix}/live.txt") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s3_remote.get(f"{prefix}/live.txt") == b"written while mounted"
    assert vols.get("ticking").refs == {"m": 1}  # still mounted
    vols.unmount("ticking", "m")


@pytest.mark.root
def test_uid_gid_and_mode_apply_to_fetched_files(
    s3_remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    s3_remote.put(f"{prefix}/dir/file.txt", b"owned")
    vols = cloud_runtime.volumes
    vols.create("owned", "s3", s3_remote.opts(prefix, uid="1234", gid="2345", mode="0750"))
    path = vols.mount("owned", "m")
    for item, want in ((path / "dir", 0o750), (path / "dir" / "file.txt", 0o640), (path, 0o750)):
        st = os.stat(item)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, want), item
    vols.unmount("owned", "m")


def test_bad_mode_and_concurrency_are_refused_at_create(
    s3_remote: Remote, cloud_runtime: Runtime
) -> None:
    with pytest.raises(InvalidArgument, match="volume bad: mode"):
        cloud_runtime.volumes.create("bad", "s3", s3_remote.opts("p", mode="rwx"))
    with pytest.raises(InvalidArgument, match="volume bad: concurrency"):
        cloud_runtime.volumes.create("bad", "s3", s3_remote.opts("p", concurrency="0"))
    assert cloud_runtime.volumes.list() == []


class _Observer:
    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def cargohold_volume_event(self, event: Any) -> None:
        self.events.append(event)


def test_a_conflict_is_a_volume_event(s3_remote: Remote, prefix: str, tmp_path: Path) -> None:
    observer = _Observer()
    with Runtime(tmp_path / "state", plugins=[observer]) as rt:
        s3_remote.put(f"{prefix}/x.txt", b"one")
        rt.volumes.create("watched", "s3", s3_remote.opts(prefix))
        (rt.volumes.mount("watched", "m") / "x.txt").write_bytes(b"local")
        s3_remote.put(f"{prefix}/x.txt", b"remote")
        rt.volumes.unmount("watched", "m")
        drv: Any = rt.drivers.get("s3")
        drv.workers.wait("watched", 60)
    conflicts = [e for e in observer.events if e.action == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0].volume == "watched" and conflicts[0].attributes["path"] == "x.txt"
    assert conflicts[0].attributes["copy"].startswith("x.conflict-")
