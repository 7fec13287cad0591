"""Snapshots and clones of the loop array on a pool that has reflinks (xfs, reflink=1).

A snapshot or clone of a volume holding 48 MiB must take (almost) no new space
in the pool: the image files share their blocks. On the ext4 of the default
pool the same snapshot is a sparse copy and does take the space, which shows
the test would notice a copy.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.kernel import btrfs, files

from .conftest import missing_tools_reason

pytestmark = pytest.mark.root

WRITTEN = 48 * 1024**2


@pytest.fixture(autouse=True)
def _tools() -> None:
    reason = missing_tools_reason("mkfs.ext4", "mkfs.xfs")
    if reason:
        pytest.skip(reason)


@pytest.fixture
def on_xfs(
    state_dir: Path, xfs_pool: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, Path]]:
    monkeypatch.setenv("CARGOHOLD_ARRAY_LOOP_POOL", str(xfs_pool))
    runtime = Runtime(state_dir)
    try:
        yield runtime, xfs_pool
    finally:
        for volume in runtime.volumes.list():
            for mount_id in volume.refs:
                runtime.volumes.unmount(volume.name, mount_id)
            runtime.volumes.remove(volume.name)
        runtime.close()


def used(path: Path) -> int:
    os.sync()
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def written_volume(rt: Runtime) -> tuple[str, Path, str]:
    vol = f"rf-{secrets.token_hex(4)}"
    rt.volumes.create(vol, "loop", {"size": "128m"})
    path = rt.volumes.mount(vol, "m")
    data = secrets.token_bytes(WRITTEN)
    (path / "data").write_bytes(data)
    return vol, path, hashlib.sha256(data).hexdigest()


def test_the_pool_has_reflinks(xfs_pool: Path) -> None:
    assert btrfs.filesystem_magic(xfs_pool) == 0x58465342  # XFS_SUPER_MAGIC
    assert files.supports_reflink(xfs_pool)


def test_snapshot_and_clone_share_blocks_on_xfs(on_xfs: tuple[Runtime, Path]) -> None:
    rt, pool = on_xfs
    vol, path, sha = written_volume(rt)
    before = used(pool)
    rt.volumes.snapshot(vol, "s1")
    clone = f"{vol}-c"
    rt.volumes.create(clone, "loop", {"from": vol})
    grown = used(pool) - before
    assert grown < WRITTEN // 4, f"the pool grew by {grown} bytes: copies, not reflinks"
    restored = f"{vol}-r"
    rt.volumes.create(restored, "loop", {"snapshot": f"{vol}@s1"})
    for other in (clone, restored):
        data = (rt.volumes.mount(other, "m") / "data").read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
    (path / "data").write_bytes(b"overwritten")  # unshares the source's blocks only
    in_clone = (rt.volumes.path(clone) or Path("/")) / "data"
    assert hashlib.sha256(in_clone.read_bytes()).hexdigest() == sha


def test_without_reflinks_a_snapshot_is_a_sparse_copy(state_dir: Path) -> None:
    with Runtime(state_dir) as rt:
        pool = state_dir / "drivers" / "loop" / "array" / "pool"
        vol, _, _ = written_volume(rt)
        if files.supports_reflink(pool):
            pytest.skip(f"{pool} has reflinks too")
        image = pool / f"{vol}.img"
        rt.volumes.snapshot(vol, "s1")
        snap = pool / f"{vol}.snapshots" / "s1.img"
        assert snap.stat().st_size == image.stat().st_size
        # sparse: only the written extents were copied, not the 128 MiB
        assert WRITTEN <= snap.stat().st_blocks * 512 < 100 * 1024**2
        rt.volumes.unmount(vol, "m")
        rt.volumes.remove(vol)
