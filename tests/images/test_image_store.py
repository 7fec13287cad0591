"""Loading, naming, saving and removing images; bad archives change nothing."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.api.errors import Conflict, InvalidArgument, NotFound
from cargohold.core.testing.snapshotters import layer
from cargohold.plugins import shapes

from .builders import config_for, docker_archive, oci_layout, sha, tar_directory

RUN = {
    "Env": ["PATH=/usr/bin:/bin", "GREETING=hi"],
    "Cmd": ["sh", "-c", "echo $GREETING"],
    "Entrypoint": ["/bin/entry"],
    "WorkingDir": "/work",
    "User": "1000:1000",
    "Volumes": {"/data": {}, "/cache": {}},
}
BASE = layer(("dir", "bin"), ("file", "bin/tool", b"tool", 0o755), ("file", "etc-release", b"1"))
TOP = layer(("whiteout", "etc-release"), ("file", "hello", b"world"))


def state_is_empty(rt: Runtime) -> None:
    """No image, no tag, no layer blob and no staging file."""
    assert rt.images.list() == []
    assert list(rt.images.blobs.iterdir()) == []
    assert list((rt.images.root / "tmp").iterdir()) == []


@pytest.mark.parametrize("blobs", [False, True], ids=["docker-20", "docker-25"])
def test_docker_archive_keeps_config_tags_and_layers(
    runtime: Runtime, tmp_path: Path, blobs: bool
) -> None:
    archive = docker_archive(
        tmp_path / "a.tar", [BASE, TOP], ["demo:1", "demo:latest"], RUN, blobs=blobs
    )
    (image,) = runtime.images.load(archive)
    assert image.repo_tags == ("demo:1", "demo:latest")
    assert image.diff_ids == (sha(BASE), sha(TOP))
    assert image.id == sha(config_for([BASE, TOP], RUN))
    assert image.env == RUN["Env"]
    assert image.cmd == RUN["Cmd"]
    assert image.entrypoint == ["/bin/entry"]
    assert (image.working_dir, image.user) == ("/work", "1000:1000")
    assert image.volumes == ["/cache", "/data"]
    # layers live under their digest, verified
    for diff_id, data in ((sha(BASE), BASE), (sha(TOP), TOP)):
        assert runtime.images.layer_path(diff_id).read_bytes() == data
    assert runtime.images.get("demo").id == image.id  # :latest implied
    assert runtime.images.get("docker.io/library/demo:1").id == image.id
    assert runtime.images.get(image.short_id).id == image.id
    assert shapes.image_inspect(runtime.images.get(image.id))["Config"]["WorkingDir"] == "/work"


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("packed", [False, True], ids=["layout-dir", "archive"])
def test_oci_images_load(runtime: Runtime, tmp_path: Path, compress: bool, packed: bool) -> None:
    source = oci_layout(
        tmp_path / "oci", [BASE, TOP], "example.com/team/app:2", RUN, compress=compress
    )
    if packed:
        source = tar_directory(source, tmp_path / "oci.tar")
    (image,) = runtime.images.load(source)
    assert image.repo_tags == ("example.com/team/app:2",)
    assert image.diff_ids == (sha(BASE), sha(TOP))  # stored uncompressed, by diff id
    assert runtime.images.layer_path(sha(TOP)).read_bytes() == TOP
    assert image.cmd == RUN["Cmd"]


def test_shared_layers_are_stored_once(runtime: Runtime, tmp_path: Path) -> None:
    runtime.images.load(docker_archive(tmp_path / "a.tar", [BASE], ["a:1"]))
    runtime.images.load(docker_archive(tmp_path / "b.tar", [BASE, TOP], ["b:1"]))
    assert sorted(p.name for p in runtime.images.blobs.iterdir()) == sorted(
        d.removeprefix("sha256:") for d in (sha(BASE), sha(TOP))
    )
    runtime.images.remove("b:1")
    assert [p.name for p in runtime.images.blobs.iterdir()] == [sha(BASE).removeprefix("sha256:")]
    runtime.images.remove("a:1")
    state_is_empty(runtime)


def test_remove_untags_before_it_deletes(runtime: Runtime, tmp_path: Path) -> None:
    (image,) = runtime.images.load(docker_archive(tmp_path / "a.tar", [BASE], ["x:1", "x:2"]))
    with pytest.raises(Conflict, match="must be forced"):
        runtime.images.remove(image.short_id)
    assert runtime.images.remove("x:1") == [("Untagged", "x:1")]
    assert runtime.images.get(image.id).repo_tags == ("x:2",)
    assert runtime.images.remove("x:2") == [("Untagged", "x:2"), ("Deleted", image.id)]
    state_is_empty(runtime)


def test_an_image_a_container_holds_cannot_be_removed(runtime: Runtime, tmp_path: Path) -> None:
    (image,) = runtime.images.load(docker_archive(tmp_path / "a.tar", [BASE], ["held:1"]))
    runtime.images.hold("held:1", "c0ffee" * 10)
    with pytest.raises(Conflict, match="used by container c0ffee"):
        runtime.images.remove("held:1")
    assert runtime.images.get("held:1").holders == ("c0ffee" * 10,)
    runtime.images.release(image.id, "c0ffee" * 10)
    runtime.images.remove("held:1")


def test_save_then_load_gives_the_same_image(runtime: Runtime, tmp_path: Path) -> None:
    (image,) = runtime.images.load(docker_archive(tmp_path / "a.tar", [BASE, TOP], ["s:1"], RUN))
    runtime.images.save(["s:1"], tmp_path / "saved.tar")
    with Runtime(tmp_path / "other") as other:
        (again,) = other.images.load(tmp_path / "saved.tar")
        assert (again.id, again.repo_tags, again.diff_ids) == (image.id, ("s:1",), image.diff_ids)


def test_import_rootfs_tarball_with_changes(runtime: Runtime, tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(gzip.compress(BASE))
    image = runtime.images.import_rootfs(
        tarball, "imported", changes=['CMD ["/bin/tool"]', "ENV A=1 B=2", "WORKDIR /srv"]
    )
    assert image.repo_tags == ("imported:latest",)
    assert image.diff_ids == (sha(BASE),)
    assert image.cmd == ["/bin/tool"]
    assert image.env == ["A=1", "B=2"]
    assert image.working_dir == "/srv"


# -- bad input -----------------------------------------------------------------


def truncated(tmp_path: Path) -> Path:
    whole = docker_archive(tmp_path / "whole.tar", [BASE, TOP]).read_bytes()
    path = tmp_path / "cut.tar"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def digest_mismatch(tmp_path: Path) -> Path:
    # the config promises BASE, the archive carries something else
    altered = layer(("file", "evil", b"x"))
    return docker_archive(tmp_path / "a.tar", [altered], config=config_for([BASE]))


def config_name_mismatch(tmp_path: Path) -> Path:
    path = docker_archive(tmp_path / "a.tar", [BASE])
    out = tmp_path / "b.tar"
    with tarfile.open(path) as src, tarfile.open(out, "w") as dst:
        for member in src:
            data = src.extractfile(member)
            content = data.read() if data else b""
            if member.name.endswith(".json") and member.name != "manifest.json":
                content = content.replace(b"amd64", b"arm64")
                member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    return out


def oci_blob_altered(tmp_path: Path) -> Path:
    root = oci_layout(tmp_path / "oci", [BASE])
    layer_blob = next(
        p for p in (root / "blobs/sha256").iterdir() if p.read_bytes()[:2] == b"\x1f\x8b"
    )
    layer_blob.write_bytes(gzip.compress(TOP))
    return root


def oci_gzip_corrupt(tmp_path: Path) -> Path:
    root = oci_layout(tmp_path / "oci", [BASE])
    index = json.loads((root / "index.json").read_text())
    manifest_path = root / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(manifest_path.read_text())
    blob = root / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    blob.write_bytes(blob.read_bytes()[:40])
    # keep the descriptor digests right: the damage is in the compressed stream itself
    manifest["layers"][0]["digest"] = sha(blob.read_bytes())
    blob.rename(root / "blobs/sha256" / manifest["layers"][0]["digest"][7:])
    manifest_bytes = json.dumps(manifest).encode()
    manifest_path.unlink()
    (root / "blobs/sha256" / sha(manifest_bytes)[7:]).write_bytes(manifest_bytes)
    index["manifests"][0]["digest"] = sha(manifest_bytes)
    (root / "index.json").write_text(json.dumps(index))
    return root


def escaping(*entries: tuple[object, ...]):  # type: ignore[no-untyped-def]
    def build(tmp_path: Path) -> Path:
        return docker_archive(tmp_path / "a.tar", [BASE, layer(*entries)])

    return build


def not_an_archive(tmp_path: Path) -> Path:
    path = tmp_path / "noise.tar"
    path.write_bytes(os.urandom(4096))
    return path


def no_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "empty.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("hello")
        tar.addfile(info, io.BytesIO(b""))
    return path


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (truncated, "corrupt|truncated|cannot read"),
        (digest_mismatch, "does not match"),
        (config_name_mismatch, "not the one its name gives"),
        (oci_blob_altered, "does not match its digest|does not match"),
        (oci_gzip_corrupt, "corrupt or truncated"),
        (escaping(("file", "../evil", b"x")), "outside the root"),
        (escaping(("file", "/../../evil", b"x")), "outside the root"),
        (escaping(("symlink", "up", "../../../etc")), "outside the root"),
        (escaping(("symlink", "etc", "/etc"), ("file", "etc/passwd", b"x")), "through a symlink"),
        (escaping(("hardlink", "pw", "../../etc/passwd")), "outside the root"),
        (not_an_archive, "cannot read"),
        (no_manifest, "neither a docker-archive"),
    ],
    ids=[
        "truncated",
        "layer-digest",
        "config-digest",
        "oci-blob-digest",
        "oci-gzip-corrupt",
        "dotdot-name",
        "absolute-dotdot",
        "symlink-up",
        "write-through-symlink",
        "hardlink-outside",
        "noise",
        "no-manifest",
    ],
)
def test_bad_archives_are_refused_and_leave_nothing(
    runtime: Runtime,
    tmp_path: Path,
    build,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    source = build(tmp_path)
    with pytest.raises(InvalidArgument, match=message):
        runtime.images.load(source)
    state_is_empty(runtime)


def test_a_failed_load_keeps_what_was_there(runtime: Runtime, tmp_path: Path) -> None:
    runtime.images.load(docker_archive(tmp_path / "good.tar", [BASE], ["demo:1"]))
    before = runtime.images.get("demo:1")
    with pytest.raises(InvalidArgument):
        runtime.images.load(
            docker_archive(tmp_path / "bad.tar", [TOP], ["demo:1"], config=config_for([BASE, TOP]))
        )
    assert runtime.images.get("demo:1") == before
    assert [i.id for i in runtime.images.list()] == [before.id]


def test_unknown_images_say_what_to_do(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"no such image: nope:1; load it"):
        runtime.images.get("nope:1")
    with pytest.raises(NotFound):
        runtime.images.remove("nope")
    with pytest.raises(NotFound):
        runtime.images.save(["nope"], tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
    with pytest.raises(NotFound, match="does not exist"):
        runtime.images.load(tmp_path / "missing.tar")
    with pytest.raises(InvalidArgument, match="invalid reference"):
        runtime.images.import_rootfs(tmp_path / "x", "Bad Name")


def test_leftovers_of_a_crashed_load_are_removed_by_the_next(
    runtime: Runtime, tmp_path: Path
) -> None:
    runtime.images.load(docker_archive(tmp_path / "a.tar", [BASE], ["a:1"]))
    # what a load killed between staging and its transaction leaves
    stale = runtime.images.root / "tmp" / "stage-crashed"
    stale.mkdir()
    (stale / "half-a-layer").write_bytes(b"x" * 100)
    orphan = runtime.images.blobs / ("ab" * 32)
    orphan.write_bytes(b"never recorded")
    runtime.images.load(docker_archive(tmp_path / "b.tar", [TOP], ["b:1"]))
    assert not stale.exists() and not orphan.exists()
    assert len(list(runtime.images.blobs.iterdir())) == 2
