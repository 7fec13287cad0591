"""Parsing docker's mount syntaxes into MountSpec values (no root needed)."""

from __future__ import annotations

import os

import pytest

from cargohold.core import InvalidArgument
from cargohold.core.api.container_mounts import (
    MountSpec,
    parse_all,
    parse_mount,
    parse_tmpfs,
    parse_volume,
    parse_volumes_from,
)


def test_dash_v_forms() -> None:
    anon = parse_volume("/data")
    assert (anon.type, anon.source, anon.target, anon.anonymous) == ("volume", "", "/data", True)
    named = parse_volume("db:/var/lib/db:ro,nocopy")
    assert (named.type, named.source, named.readonly) == ("volume", "db", True)
    assert named.options["nocopy"] == "true" and not named.anonymous
    bind = parse_volume("/srv/x:/x:rw,rshared")
    assert (bind.type, bind.source, bind.readonly) == ("bind", "/srv/x", False)
    assert bind.options["propagation"] == "rshared"
    relative = parse_volume("./here:/here")
    assert relative.source == os.path.abspath("here")
    anon_ro = parse_volume("/data:ro,nocopy")  # options without a source: still anonymous
    assert (anon_ro.target, anon_ro.readonly, anon_ro.anonymous) == ("/data", True, True)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("db:relative", "absolute"),
        ("data:rel", "target 'rel' must be an absolute path"),
        (":/data", "^invalid spec: :/data: empty section between colons$"),
        ("a::/data", "empty section between colons"),
        ("/a:/b:", "empty section between colons"),
        (":", "empty section between colons"),
        ("", "^invalid empty volume spec$"),
        ("db:/x:bogus", "unknown option 'bogus'"),
        ("a:b:c:d", "SOURCE:]TARGET"),
        ("db:/", "root"),
        ("/h:/x:nocopy", "nocopy applies to volumes"),
        ("db:/x:rshared", "propagation applies to bind"),
    ],
)
def test_dash_v_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_volume(text)


def test_mount_flag() -> None:
    spec = parse_mount(
        "type=volume,source=v1,target=/d,readonly,volume-driver=local,"
        "volume-opt=type=tmpfs,volume-label=team=a,volume-nocopy"
    )
    assert spec == MountSpec(
        "volume",
        "v1",
        "/d",
        True,
        {"driver": "local", "volume-opt.type": "tmpfs", "volume-label.team": "a", "nocopy": "true"},
    )
    bind = parse_mount('type=bind,src=/srv,dst=/srv,bind-propagation=rslave,"ro=false"')
    assert bind.readonly is False and bind.options == {"propagation": "rslave"}
    assert "create-source" not in bind.options  # --mount never makes a missing source
    tmp = parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777")
    assert tmp.options == {"tmpfs": "size=64m,mode=1777"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("type=nfs,target=/x", "type must be"),
        ("type=volume,target=/x,bogus=1", "unknown key"),
        ("type=bind,target=/x", "needs source"),
        ("type=tmpfs,source=a,target=/x", "no source"),
        ("type=volume,target=/x,bind-propagation=shared", "does not apply"),
        ("type=volume,source=v", "no target"),
        ("type=volume,target=/x,readonly=maybe", "not a boolean"),
        ("type=tmpfs,target=/x,tmpfs-mode=99z", "not octal"),
    ],
)
def test_mount_flag_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_mount(text)


def test_tmpfs_and_volumes_from() -> None:
    spec = parse_tmpfs("/run:size=10m,noexec,ro")
    assert spec.readonly and spec.options == {"tmpfs": "size=10m,noexec"}
    with pytest.raises(InvalidArgument, match="unknown tmpfs option"):
        parse_tmpfs("/run:bogus")
    assert parse_volumes_from("data:ro").readonly
    assert parse_volumes_from("data").options == {}
    with pytest.raises(InvalidArgument, match="CONTAINER"):
        parse_volumes_from("data:rx")


def test_duplicate_targets_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="duplicate mount point: /d"):
        parse_all(volumes=["a:/d"], tmpfs=["/d"])


def test_round_trip() -> None:
    spec = parse_volume("db:/x:ro")
    assert MountSpec.from_dict(spec.to_dict()) == spec
