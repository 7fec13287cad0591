"""Each cloud driver against its local server: fetch, write-back, conflicts, read-only, sizes."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.drivers.cloud.base import CloudDriver
from cargohold.plugins import shapes

from .conftest import Remote


def cloud_driver(rt: Runtime, name: str) -> CloudDriver:
    drv = rt.drivers.get(rt.volumes.get(name).driver)
    assert isinstance(drv, CloudDriver)
    return drv


def written_back(rt: Runtime, name: str, timeout: float = 120) -> None:
    """Wait for the background write-back the last unmount started."""
    drv = cloud_driver(rt, name)
    drv.workers.wait(name, timeout)
    status = rt.volumes.get(name).status
    assert status["pending_files"] == 0, status


def test_a_mount_fetches_existing_objects(
    remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    remote.put(f"{prefix}/hello.txt", b"hello from the cloud\n")
    remote.put(f"{prefix}/deep/er/data.bin", bytes(range(256)) * 100)
    cloud_runtime.volumes.create("share", remote.driver, remote.opts(prefix))
    path = cloud_runtime.volumes.mount("share", "m1")
    assert (path / "hello.txt").read_bytes() == b"hello from the cloud\n"
    assert (path / "deep/er/data.bin").read_bytes() == bytes(range(256)) * 100
    cloud_runtime.volumes.unmount("share", "m1")
    # a later mount fetches only what changed
    remote.put(f"{prefix}/hello.txt", b"changed remotely\n")
    path = cloud_runtime.volumes.mount("share", "m2")
    assert (path / "hello.txt").read_bytes() == b"changed remotely\n"
    cloud_runtime.volumes.unmount("share", "m2")
    written_back(cloud_runtime, "share")
    cloud_runtime.volumes.remove("share")
    assert remote.get(f"{prefix}/hello.txt") == b"changed remotely\n"  # kept: no delete_remote


def test_write_overwrite_delete_and_empty_dir_appear_remotely(
    remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    remote.put(f"{prefix}/old.txt", b"to be overwritten")
    remote.put(f"{prefix}/gone.txt", b"to be deleted")
    vols = cloud_runtime.volumes
    vols.create("share", remote.driver, remote.opts(prefix))
    path = vols.mount("share", "m1")
    (path / "new.txt").write_bytes(b"written in the container")
    (path / "old.txt").write_bytes(b"overwritten")
    (path / "gone.txt").unlink()
    (path / "empty").mkdir()
    (path / "sub").mkdir()
    (path / "sub" / "f").write_bytes(b"in a subdirectory")
    started = time.monotonic()
    vols.unmount("share", "m1")
    assert time.monotonic() - started < 5  # answers at once; the upload runs behind
    written_back(cloud_runtime, "share")
    assert remote.get(f"{prefix}/new.txt") == b"written in the container"
    assert remote.get(f"{prefix}/old.txt") == b"overwritten"
    assert remote.get(f"{prefix}/gone.txt") is None
    assert remote.get(f"{prefix}/sub/f") == b"in a subdirectory"
    assert "empty/" in remote.keys(prefix)
    status = vols.get("share").status
    assert status["pending_files"] == 0 and status["conflicts"] == []
    # a second volume on the same prefix sees it all, the empty directory included
    vols.create("other", remote.driver, remote.opts(prefix))
    other = vols.mount("other", "m2")
    assert sorted(p.name for p in other.iterdir()) == ["empty", "new.txt", "old.txt", "sub"]
    vols.unmount("other", "m2")


def test_a_remote_change_during_a_mount_is_a_conflict_and_both_survive(
    remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    remote.put(f"{prefix}/doc.txt", b"version 1")
    vols = cloud_runtime.volumes
    vols.create("share", remote.driver, remote.opts(prefix))
    path = vols.mount("share", "m1")
    (path / "doc.txt").write_bytes(b"local version 2")
    remote.put(f"{prefix}/doc.txt", b"remote version 2")  # someone else, meanwhile
    vols.unmount("share", "m1")
    written_back(cloud_runtime, "share")
    assert remote.get(f"{prefix}/doc.txt") == b"remote version 2"  # never overwritten
    copies = [k for k in remote.keys(prefix) if k.startswith("doc.conflict-")]
    assert len(copies) == 1 and copies[0].endswith(".txt")
    assert remote.get(f"{prefix}/{copies[0]}") == b"local version 2"
    conflicts = vols.get("share").status["conflicts"]
    assert [(c["path"], c["copy"]) for c in conflicts] == [("doc.txt", copies[0])]
    # locally both versions too
    path = vols.mount("share", "m2")
    assert (path / "doc.txt").read_bytes() == b"remote version 2"
    assert (path / copies[0]).read_bytes() == b"local version 2"
    vols.unmount("share", "m2")


def test_readonly_volumes_refuse_writes_and_never_write_back(
    remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    remote.put(f"{prefix}/data.txt", b"read me")
    vols = cloud_runtime.volumes
    vols.create("ro", remote.driver, remote.opts(prefix, readonly="true"))
    path = vols.mount("ro", "m1")
    assert (path / "data.txt").read_bytes() == b"read me"
    with pytest.raises(OSError) as caught:
        (path / "new.txt").write_bytes(b"nope")
    assert caught.value.errno == 30  # EROFS, even for root
    vols.unmount("ro", "m1")
    assert remote.keys(prefix) == {"data.txt"}


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_a_50_mb_file_and_2000_small_files_round_trip(
    remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    vols = cloud_runtime.volumes
    vols.create("big", remote.driver, remote.opts(prefix, concurrency="8"))
    path = vols.mount("big", "m1")
    big = secrets.token_bytes(1024 * 1024) * 50
    (path / "big.bin").write_bytes(big)
    for i in range(2000):
        directory = path / f"d{i % 20:02d}"
        directory.mkdir(exist_ok=True)
        (directory / f"f{i}.txt").write_bytes(f"small file {i}\n".encode() * (i % 7))
    want = _tree(path)
    vols.unmount("big", "m1")
    written_back(cloud_runtime, "big", timeout=300)
    assert len(remote.keys(prefix)) >= 2001
    assert remote.get(f"{prefix}/big.bin") == big
    vols.create("copy", remote.driver, remote.opts(prefix, concurrency="8"))
    assert _tree(vols.mount("copy", "m2")) == want
    vols.unmount("copy", "m2")


def test_a_restart_keeps_volumes_and_options(remote: Remote, prefix: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    opts = remote.opts(prefix, sync_interval="30", concurrency="3")
    with Runtime(state) as rt:
        rt.volumes.create("kept", remote.driver, opts, {"team": "a"})
        (rt.volumes.mount("kept", "m1") / "f").write_bytes(b"before the restart")
        rt.volumes.unmount("kept", "m1")
        before = rt.volumes.get("kept")
    with Runtime(state) as rt:
        after = rt.volumes.get("kept")
        assert (after.options, after.labels, after.driver) == (
            before.options,
            before.labels,
            before.driver,
        )
        assert after.status["remote"] == before.status["remote"]
        assert remote.get(f"{prefix}/f") == b"before the restart"
        assert (rt.volumes.mount("kept", "m2") / "f").read_bytes() == b"before the restart"
        rt.volumes.unmount("kept", "m2")


def test_secrets_never_appear_in_state_or_status(
    s3_remote: Remote, prefix: str, cloud_runtime: Runtime, tmp_path: Path
) -> None:
    from .conftest import S3_SECRET

    vols = cloud_runtime.volumes
    vols.create("secretive", "s3", s3_remote.opts(prefix))
    path = vols.mount("secretive", "m1")
    (path / "f").write_bytes(b"x")
    vols.unmount("secretive", "m1")
    written_back(cloud_runtime, "secretive")
    shown: Any = shapes.volume(vols.get("secretive"))
    assert S3_SECRET not in repr(shown)
    for file in (tmp_path / "state").rglob("*"):
        if file.is_file() and os.access(file, os.R_OK):
            assert S3_SECRET.encode() not in file.read_bytes(), file
