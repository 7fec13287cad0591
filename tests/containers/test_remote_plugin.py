"""A container's volume on a remote Docker volume plugin, spoken to over its socket."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.api.container_mounts import parse_all
from cargohold.plugins.docker.discovery import SOCKET_DIR_ENV

from ..docker.miniplugin import MiniPlugin
from .conftest import IMAGE

pytestmark = pytest.mark.root


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, MiniPlugin]]:
    """A stdlib Docker volume plugin on a private socket directory."""
    sockets = Path(f"/tmp/chc-{secrets.token_hex(3)}")  # unix socket paths are short
    sockets.mkdir()
    monkeypatch.setenv(SOCKET_DIR_ENV, str(sockets))
    name = f"mini{secrets.token_hex(3)}"
    plugin = MiniPlugin(tmp_path / "plugin-data")
    plugin.serve_unix(sockets / f"{name}.sock")
    try:
        yield name, plugin
    finally:
        plugin.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def test_volume_on_a_docker_plugin(rt: Runtime, remote: tuple[str, MiniPlugin]) -> None:
    name, plugin = remote
    service = rt.containers
    container = service.create(
        IMAGE,
        ["sh", "-c", "echo remote > /r/f"],
        mounts=parse_all(mounts=[f"type=volume,source=rv,target=/r,volume-driver={name}"]),
    )
    assert rt.volumes.get("rv").driver == name
    assert service.supervise(container.id) == 0
    calls = [(r.method, json.loads(r.body or b"{}")) for r in plugin.requests]
    mounts = [body for method, body in calls if method == "VolumeDriver.Mount"]
    unmounts = [body for method, body in calls if method == "VolumeDriver.Unmount"]
    # one mount for the run and its unmount, under one 64-hex mount id
    assert len(mounts) == 1 and mounts == unmounts and mounts[0]["Name"] == "rv"
    assert len(mounts[0]["ID"]) == 64
    found = list(plugin.root.rglob("f"))
    assert len(found) == 1 and found[0].read_text() == "remote\n"
    service.remove(container.id, volumes=True)
    rt.volumes.remove("rv")
    assert not any(plugin.root.rglob("f"))
