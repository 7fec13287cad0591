"""The real docker CLI against ``cargohold daemon``: volumes, and read-only listings."""

from __future__ import annotations

import json

import pytest

from cargohold.core import Runtime
from cargohold.core.api.container_mounts import parse_all

from ..containers.conftest import IMAGE
from .conftest import Daemon

pytestmark = pytest.mark.root


def ok(done: object) -> str:
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    return done.stdout  # type: ignore[attr-defined,no-any-return]


def test_docker_version_and_volume_lifecycle(daemon: Daemon, rt: Runtime) -> None:
    version = json.loads(ok(daemon.docker("version", "--format", "{{json .Server}}")))
    assert version["ApiVersion"] == "1.45" and version["Os"] == "linux"
    assert ok(daemon.docker("volume", "create", "--label", "team=a", "v1")) == "v1\n"
    assert (
        ok(daemon.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "v2"))
        == "v2\n"
    )
    generated = ok(daemon.docker("volume", "create")).strip()
    assert len(generated) == 64
    assert rt.volumes.get("v1").labels == {"team": "a"}  # it is cargohold's volume
    listed = ok(daemon.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}")).split("\n")
    assert {"local v1", "local v2", f"local {generated}"} <= set(listed)
    assert ok(daemon.docker("volume", "ls", "-q", "-f", "label=team=a")) == "v1\n"
    assert ok(daemon.docker("volume", "ls", "-q", "-f", "name=v2")) == "v2\n"
    (inspected,) = json.loads(ok(daemon.docker("volume", "inspect", "v2")))
    assert inspected["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    assert inspected["Mountpoint"].endswith("/v2/_data") and inspected["Scope"] == "local"
    bad = daemon.docker("volume", "ls", "-f", "colour=red")
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr
    missing = daemon.docker("volume", "inspect", "nosuch")
    assert missing.returncode != 0 and "no such volume: nosuch" in missing.stderr
    assert daemon.docker("volume", "rm", "-f", "nosuch").returncode == 0
    conflict = daemon.docker("volume", "create", "-d", "bind", "-o", "source=/tmp", "v1")
    assert conflict.returncode != 0 and "driver 'local' already has volume 'v1'" in conflict.stderr
    ok(daemon.docker("volume", "rm", "v1", "v2", generated))
    assert rt.volumes.list() == []


def test_volumes_used_by_containers_are_kept(daemon: Daemon, rt: Runtime) -> None:
    container = rt.containers.create(
        IMAGE, ["true"], name="user1", mounts=parse_all(volumes=["held:/d", "/anon"])
    )
    anon = next(m.source for m in container.mounts if m.target == "/anon")
    ok(daemon.docker("volume", "create", "free"))
    ok(daemon.docker("volume", "create", "--label", "keep=1", "free2"))
    in_use = daemon.docker("volume", "rm", "held")
    assert in_use.returncode != 0 and "volume held is in use" in in_use.stderr
    forced = daemon.docker("volume", "rm", "-f", "held")  # force never beats a container
    assert forced.returncode != 0 and "in use" in forced.stderr
    dangling = ok(daemon.docker("volume", "ls", "-q", "-f", "dangling=true")).split()
    assert set(dangling) == {"free", "free2"}
    # API >= 1.42: prune takes only unused anonymous volumes; none here
    assert "Total reclaimed space: 0B" in ok(daemon.docker("volume", "prune", "-f"))
    pruned = ok(daemon.docker("volume", "prune", "-a", "-f", "--filter", "label!=keep"))
    assert "free\n" in pruned and "free2" not in pruned and "held" not in pruned
    assert {v.name for v in rt.volumes.list()} == {"held", "free2", anon}
    # the read-only container and image listings
    ps = ok(daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Image}} {{.Status}}"))
    assert ps == f"user1 {IMAGE} Created\n"
    assert ok(daemon.docker("ps", "-q")) == ""  # nothing running
    images = ok(daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}")).split()
    assert IMAGE in images
    (inspected,) = json.loads(ok(daemon.docker("container", "inspect", "user1")))
    assert inspected["Id"] == container.id and inspected["State"]["Status"] == "created"
    assert {m["Destination"] for m in inspected["Mounts"]} == {"/d", "/anon"}
    (image,) = json.loads(ok(daemon.docker("image", "inspect", IMAGE)))
    assert image["Id"] == rt.images.get(IMAGE).id
    missing = daemon.docker("container", "inspect", "ghost")
    assert missing.returncode != 0 and "no such container: ghost" in missing.stderr.lower()


def test_engine_api_protocol_details(daemon: Daemon) -> None:
    status, headers, body = daemon.request("HEAD", "/_ping")
    assert (status, headers["Api-Version"]) == (200, "1.45")
    status, headers, body = daemon.request("GET", "/v1.41/_ping")
    assert (status, body) == (200, b"OK")
    for method, path, data, expected in [
        ("GET", "/v1.45/volumes/nosuch", None, 404),
        ("GET", "/nowhere", None, 404),
        ("POST", "/volumes/create", b"{not json", 400),
        ("POST", "/volumes/create", b"[1, 2]", 400),
        ("POST", "/volumes/create", b'{"Name": "a/b"}', 400),
        ("POST", "/volumes/create", b'{"Name": "ok1", "Labels": {"a": 1}}', 400),
        ("POST", "/volumes/create", b"x" * (2 << 20), 413),
        ("GET", "/volumes?filters=%7Bbroken", None, 400),
        ("GET", "/v1.99/version", None, 400),
        ("DELETE", "/volumes/nosuch", None, 404),
    ]:
        status, headers, body = daemon.request(method, path, data)
        assert status == expected, (path, body)
        assert headers["Api-Version"] == "1.45"
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["message"]
    status, _, body = daemon.request("POST", "/v1.45/volumes/create", b'{"Name": "fine"}')
    assert status == 201 and json.loads(body)["Name"] == "fine"
    status, _, body = daemon.request("GET", "/volumes")
    assert json.loads(body) == {
        "Volumes": [json.loads(daemon.request("GET", "/volumes/fine")[2])],
        "Warnings": None,
    }
    assert daemon.request("DELETE", "/volumes/fine")[0] == 204
