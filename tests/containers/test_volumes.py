"""Volumes, binds, tmpfs and data-volume containers, all through the mount plugins."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cargohold.core import InUse, Runtime
from cargohold.core.api.container_mounts import parse_all

from .conftest import IMAGE, cli

pytestmark = pytest.mark.root


def output(rt: Runtime, container_id: str) -> str:
    return b"".join(d for s, d in rt.containers.logs(container_id) if s == "stdout").decode()


def test_a_stopped_container_holds_its_volumes_until_removed(rt: Runtime) -> None:
    service = rt.containers
    container = service.create(
        IMAGE, ["sh", "-c", "echo kept > /data/f"], mounts=parse_all(volumes=["keep:/data"])
    )
    assert service.supervise(container.id) == 0
    volume = rt.volumes.get("keep")
    assert volume.ref_count == 0  # not mounted any more...
    with pytest.raises(InUse, match=container.id):  # ...but held, as in Docker
        rt.volumes.remove("keep")
    refused = cli(rt.state_dir, "volume", "rm", "keep")
    assert refused.returncode == 1 and "in use" in refused.stderr
    assert rt.volumes.prune({"all": {"true"}}).removed == []
    service.remove(container.id, volumes=True)  # -v never removes a named volume
    assert (Path(rt.volumes.get("keep").mountpoint) / "f").read_text() == "kept\n"
    rt.volumes.remove("keep")


def test_anonymous_volumes_prefilled_from_the_image_and_removed_by_rm_v(rt: Runtime) -> None:
    service = rt.containers
    # bb:vol declares VOLUME /seed; /seed holds a file in the image
    seeded = service.create("bb:vol", ["cat", "/seed/from-image"])
    assert service.supervise(seeded.id) == 0 and output(rt, seeded.id) == "seeded\n"
    (anon,) = [m.source for m in service.get(seeded.id).mounts]
    assert rt.volumes.get(anon).anonymous
    nocopy = service.create(
        IMAGE, ["ls", "-A", "/seed"], mounts=parse_all(volumes=["/seed:nocopy", "/empty"])
    )
    assert service.supervise(nocopy.id) == 0 and output(rt, nocopy.id) == ""
    names = [m.source for m in service.get(nocopy.id).mounts]
    assert len(names) == 2 and all(len(n) == 64 for n in names)
    service.remove(seeded.id)  # without -v: the volume stays, unheld
    assert rt.volumes.get(anon).ref_count == 0
    service.remove(nocopy.id, volumes=True)
    remaining = {v.name for v in rt.volumes.list()}
    assert anon in remaining and not set(names) & remaining


def test_volumes_from_takes_every_mount_and_can_make_them_read_only(
    rt: Runtime, tmp_path: Path
) -> None:
    service = rt.containers
    host = tmp_path / "bound"
    host.mkdir()
    data = service.create(
        IMAGE,
        ["sh", "-c", "echo shared > /named/f; echo anon > /anon/f"],
        name="datac",
        mounts=parse_all(volumes=["vfrom:/named", "/anon", f"{host}:/bound"], tmpfs=["/scratch"]),
    )
    assert service.supervise(data.id) == 0
    reader = service.create(
        IMAGE,
        [
            "sh",
            "-c",
            "cat /named/f /anon/f; ls /bound >/dev/null && echo bound; "
            "test -e /scratch || echo no-tmpfs; touch /named/g 2>/dev/null || echo read-only",
        ],
        mounts=parse_all(volumes_from=["datac:ro"]),
    )
    assert service.supervise(reader.id) == 0
    assert output(rt, reader.id).splitlines() == [
        "shared",
        "anon",
        "bound",
        "no-tmpfs",  # as Docker: tmpfs mounts are not shared
        "read-only",
    ]
    writer = service.create(
        IMAGE, ["sh", "-c", "echo more >> /named/f"], mounts=parse_all(volumes_from=["datac"])
    )
    assert service.supervise(writer.id) == 0
    # removing the data container with -v keeps its anonymous volume: others hold it
    anon = next(m.source for m in data.mounts if m.target == "/anon")
    service.remove(data.id, volumes=True)
    assert rt.volumes.get(anon).anonymous
    service.remove(reader.id, volumes=True)
    service.remove(writer.id, volumes=True)  # takes no anonymous volume of its own
    assert (Path(rt.volumes.get("vfrom").mountpoint) / "f").read_text() == "shared\nmore\n"


def test_cli_flags_reach_the_mounts(rt: Runtime, tmp_path: Path) -> None:
    src = tmp_path / "src"
    done = cli(
        rt.state_dir,
        "run",
        "--rm",
        "-v",
        f"{src}:/src",
        "--mount",
        "type=volume,source=clivol,target=/v,volume-label=team=a",
        "--tmpfs",
        "/t",
        IMAGE,
        "sh",
        "-c",
        "echo hi > /src/f; echo v > /v/f",
    )
    assert done.returncode == 0, done.stderr
    assert (src / "f").read_text() == "hi\n"  # -v made the missing host directory
    assert rt.volumes.get("clivol").labels == {"team": "a"}
    assert rt.volumes.get("clivol").ref_count == 0  # --rm released everything
    rt.volumes.remove("clivol")


def test_any_driver_through_mount_options_mounted_only_while_running(
    rt: Runtime, tmp_path: Path
) -> None:
    service = rt.containers
    shared = tmp_path / "shared"
    shared.mkdir()
    specs = parse_all(
        mounts=[
            f"type=volume,source=bound,target=/b,volume-driver=bind,volume-opt=source={shared}",
            "type=volume,source=ram,target=/r,volume-opt=type=tmpfs,volume-opt=device=tmpfs",
        ]
    )
    container = service.create(
        IMAGE, ["sh", "-c", "echo via-driver > /b/f; echo ram > /r/f; sleep 100"], mounts=specs
    )
    assert rt.volumes.get("bound").driver == "bind"
    service.start(container.id)
    ram = Path(rt.volumes.get("ram").mountpoint)
    deadline = time.monotonic() + 10
    while not (shared / "f").exists():  # the driver's data, written from inside
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rt.volumes.get("ram").ref_count == 1 and (ram / "f").read_text() == "ram\n"
    service.stop(container.id, timeout=0)
    # stopped: the tmpfs is unmounted (its data gone, as a tmpfs's is), the hold stays
    assert rt.volumes.get("ram").ref_count == 0 and not (ram / "f").exists()
    with pytest.raises(InUse):
        rt.volumes.remove("ram")
    assert (shared / "f").read_text() == "via-driver\n"
    service.remove(container.id)
    rt.volumes.remove("ram")
    rt.volumes.remove("bound")
    assert (shared / "f").exists()  # the bind driver never deletes the host's data
