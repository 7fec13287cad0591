"""``cargohold serve loop`` killed with SIGKILL while a volume is mounted, then restarted.

The volume stays usable with its data: the mount outlives the process (the
loop device goes only with the mount), and a restarted server answers Mount
with the same path. If the mount went too (a host restart), the restarted
server mounts it again before it answers.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from cargohold.core.kernel import mounts

from ..docker.conftest import PluginClient, StartServe
from .conftest import leaks, missing_tools_reason, release_under

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _tools() -> None:
    reason = missing_tools_reason("mkfs.ext4", "e2fsck")
    if reason:
        pytest.skip(reason)


def mount_id() -> str:
    return secrets.token_hex(32)


@pytest.mark.parametrize("mount_lost", [False, True], ids=["mount-kept", "mount-lost"])
def test_sigkill_of_serve_while_mounted_then_restart(
    start_serve: StartServe, short_dir: Path, mount_lost: bool
) -> None:
    name = f"chtest-arr-{secrets.token_hex(3)}"
    proc = start_serve("loop", name=name)
    client = PluginClient(proc.socket)
    vol, first = f"sv-{secrets.token_hex(4)}", mount_id()
    try:
        client.call("VolumeDriver.Create", {"Name": vol, "Opts": {"size": "32m"}})
        path = Path(client.call("VolumeDriver.Mount", {"Name": vol, "ID": first})["Mountpoint"])
        (path / "f").write_text("written before the kill")
        proc.kill()
        client.close()
        assert mounts.is_mountpoint(path), "the mount outlives the server"
        assert (path / "f").read_text() == "written before the kill"
        if mount_lost:
            mounts.umount(path)  # as a host restart would: mount and loop device gone
        proc = start_serve("loop", name=name)
        client = PluginClient(proc.socket)
        assert mounts.is_mountpoint(path)
        second = mount_id()
        again = client.call("VolumeDriver.Mount", {"Name": vol, "ID": second})["Mountpoint"]
        assert Path(again) == path
        assert (path / "f").read_text() == "written before the kill"
        (path / "g").write_text("and after")
        for used in (second, first):
            client.call("VolumeDriver.Unmount", {"Name": vol, "ID": used})
        assert not mounts.is_mountpoint(path)
        client.call("VolumeDriver.Remove", {"Name": vol})
    finally:
        client.close()
        proc.stop()
        left = leaks(short_dir)
        release_under(short_dir)
    assert not left, f"the test leaked: {left}"
