"""Refused creates and starts: a clear error, and nothing of the container left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cargohold.core import CargoholdError, Runtime
from cargohold.core.api.container_mounts import parse_all
from cargohold.core.api.snapshots import Kind

from .conftest import IMAGE, cli

pytestmark = pytest.mark.root


def everything(rt: Runtime) -> dict[str, Any]:
    """What a failed create must not change: containers, snapshots, volumes, holds, dirs."""
    snapshotter = rt.snapshotters.default()
    return {
        "containers": [c.id for c in rt.containers.list(all=True)],
        # committed snapshots are the image's unpacked layers: a cache, shared
        "snapshots": [i.key for i in snapshotter.walk() if i.kind is not Kind.COMMITTED],
        "volumes": {v.name: (v.refs, rt.store.get(v.name).holders) for v in rt.volumes.list()},  # type: ignore[union-attr]
        "dirs": sorted(p.name for p in rt.containers.root.iterdir()),
        "image_holders": {i.id: i.holders for i in rt.images.list()},
    }


@pytest.fixture
def existing(rt: Runtime) -> str:
    """A container named ``taken`` holding volume ``busy``, so there is state to keep."""
    container = rt.containers.create(
        IMAGE, ["true"], name="taken", mounts=parse_all(volumes=["busy:/b"])
    )
    return container.id


def test_failed_creates_leave_nothing(rt: Runtime, existing: str, tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    before = everything(rt)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"image": "nosuch:img"}, "no such image: nosuch:img"),
        ({"name": "taken"}, f'"/taken" is already in use by container {existing}'),
        ({"name": "bad/name"}, "invalid container name"),
        ({"volumes_from": ["ghost"]}, "no such container: ghost (from --volumes-from)"),
        (
            {"volumes": ["/anon1", f"{a_file}:/a", "v2:/a/b"]},
            f"bind source {a_file} is a file, but /a must be a directory",
        ),
        (
            {"volumes": ["/anon2"], "mounts": [f"type=bind,source={tmp_path}/none,target=/x"]},
            f"bind source path does not exist: {tmp_path}/none",
        ),
        ({"network": "bridge"}, "network 'bridge' is not supported"),
        (
            {
                "volumes": ["busy:/b"],
                "mounts": ["type=volume,source=busy,target=/c,volume-driver=bind"],
            },
            "exists with driver local, not bind",
        ),
    ]
    for case, message in cases:
        specs = parse_all(
            case.get("volumes", ()), case.get("mounts", ()), (), case.get("volumes_from", ())
        )
        with pytest.raises(CargoholdError) as raised:
            rt.containers.create(
                case.get("image", IMAGE),
                ["true"],
                name=case.get("name"),
                mounts=specs,
                network=case.get("network", "none"),
            )
        assert message in str(raised.value), case
        after = everything(rt)
        # an implicitly created named volume (v2) may stay, as with Docker; nothing else may
        after["volumes"].pop("v2", None)
        assert after == before, case


def test_a_file_bound_onto_an_image_directory_fails_at_start_with_125(
    rt: Runtime, tmp_path: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    before = everything(rt)
    done = cli(rt.state_dir, "run", "--rm", "-v", f"{a_file}:/etc", "-v", "/anon", IMAGE, "true")
    assert done.returncode == 125
    assert f"cannot mount the file {a_file} on /etc: the image has a directory there" in done.stderr
    assert everything(rt) == before


def test_bad_process_settings_are_refused_at_create(rt: Runtime) -> None:
    before = everything(rt)
    for kwargs, message in [
        ({"hostname": "no/slash"}, "invalid hostname"),
        ({"env": ["A=b\0c"]}, "NUL character"),
        ({"workdir": "relative"}, "must be an absolute path"),
    ]:
        with pytest.raises(CargoholdError, match=message):
            rt.containers.create(IMAGE, ["true"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(CargoholdError, match="NUL character"):
        rt.containers.create(IMAGE, ["echo", "a\0b"])
    assert everything(rt) == before


def test_cli_refuses_bad_flags_with_125(rt: Runtime) -> None:
    done = cli(rt.state_dir, "run", "--rm", "-v", "x:relative", IMAGE, "true")
    assert done.returncode == 125 and "must be an absolute path" in done.stderr
    done = cli(rt.state_dir, "run", "--rm", "--volumes-from", "a:rx", IMAGE, "true")
    assert done.returncode == 125 and "CONTAINER[:ro|:rw]" in done.stderr


def test_rm_cleans_up_after_a_create_killed_half_way(rt: Runtime) -> None:
    """A create killed before its last write left a row without mounts or root: rm finds all."""
    from dataclasses import replace

    from cargohold.core.containers.service import Rootfs

    before = everything(rt)
    container = rt.containers.create(IMAGE, ["true"], mounts=parse_all(volumes=["/anon", "nv:/n"]))
    anon = next(m.source for m in container.mounts if m.target == "/anon")
    # what the row holds when the process dies between attaching and the final update
    rt.containers.store.update(replace(container, mounts=(), rootfs=Rootfs(None)))
    rt.containers.remove(container.id)
    after = everything(rt)
    assert anon not in after["volumes"]  # made for it alone: gone
    assert after["volumes"].pop("nv") == ({}, ())  # named: kept, no longer held
    assert after == before
