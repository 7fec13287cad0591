"""Releasing references whose Unmount never came: `VolumeService.drop_refs` and
``cargohold volume unmount``, on a real tmpfs volume of the local driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import InUse, NotFound, Runtime
from cargohold.core.kernel import mounts

from .conftest import cargohold_cli

pytestmark = pytest.mark.root

LOST_A, LOST_B = "a" * 64, "b" * 64
CONTAINER = "c" * 64
TMPFS = {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path / "state")
    try:
        yield rt
    finally:
        for volume in rt.volumes.list():
            for mount_id in volume.refs:
                rt.store.drop_hold(volume.name, mount_id)
            if volume.refs:
                rt.volumes.drop_refs(volume.name)  # unmounts the tmpfs
        rt.close()


def test_the_driver_unmounts_only_when_the_last_reference_is_dropped(runtime: Runtime) -> None:
    service = runtime.volumes
    service.create("lost", "local", TMPFS)
    path = service.mount("lost", LOST_A)
    service.mount("lost", LOST_A)  # docker cp: the same id twice
    service.mount("lost", LOST_B)
    (path / "f").write_text("data")
    assert mounts.is_mountpoint(path)

    assert service.drop_refs("lost", [LOST_A]) == {LOST_A: 2}
    assert mounts.is_mountpoint(path) and (path / "f").read_text() == "data"
    assert service.get("lost").refs == {LOST_B: 1}

    assert service.drop_refs("lost") == {LOST_B: 1}
    assert not mounts.is_mountpoint(path), "the last release unmounted through the driver"
    assert service.get("lost").refs == {}
    service.remove("lost")


def test_unknown_ids_and_holds_are_refused_and_change_nothing(runtime: Runtime) -> None:
    service = runtime.volumes
    service.create("used", "local", TMPFS)
    service.hold("used", CONTAINER)  # a container cargohold runs: held and mounted
    path = service.mount("used", CONTAINER)
    service.mount("used", LOST_A)
    with pytest.raises(NotFound, match=f"has no reference {'f' * 64}"):
        service.drop_refs("used", ["f" * 64])
    with pytest.raises(InUse, match="belongs to a container cargohold runs"):
        service.drop_refs("used")
    with pytest.raises(InUse):
        service.drop_refs("used", [LOST_A, CONTAINER])
    assert service.get("used").refs == {CONTAINER: 1, LOST_A: 1}
    assert mounts.is_mountpoint(path)
    with pytest.raises(NotFound, match="no such volume: nothere"):
        service.drop_refs("nothere")


def test_cli_lists_and_releases(runtime: Runtime) -> None:
    service = runtime.volumes
    service.create("lost", "local", TMPFS)
    path = service.mount("lost", LOST_A)
    service.hold("lost", CONTAINER)
    service.mount("lost", CONTAINER)

    listed = cargohold_cli(runtime.state_dir, "volume", "unmount", "lost")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()[1:3]}
    assert rows == {LOST_A: ["1", "-"], CONTAINER: ["1", "cargohold", "container"]}

    refused = cargohold_cli(runtime.state_dir, "volume", "unmount", "lost", "--all")
    assert refused.returncode == 1
    assert f"reference {CONTAINER} belongs to a container cargohold runs" in refused.stderr
    both = cargohold_cli(runtime.state_dir, "volume", "unmount", "lost", "--all", "--id", LOST_A)
    assert both.returncode == 2 and "not both" in both.stderr
    assert service.get("lost").refs == {LOST_A: 1, CONTAINER: 1}

    released = cargohold_cli(runtime.state_dir, "volume", "unmount", "lost", "--id", LOST_A)
    assert released.returncode == 0, released.stderr
    assert released.stdout == f"released {LOST_A} (1 mount)\n"
    assert service.get("lost").refs == {CONTAINER: 1} and mounts.is_mountpoint(path)

    runtime.volumes.unmount("lost", CONTAINER)
    runtime.volumes.release("lost", CONTAINER)
    assert (
        cargohold_cli(runtime.state_dir, "volume", "unmount", "lost").stdout
        == "volume lost has no references\n"
    )
    missing = cargohold_cli(runtime.state_dir, "volume", "unmount", "nothere")
    assert missing.returncode == 1 and "no such volume: nothere" in missing.stderr
