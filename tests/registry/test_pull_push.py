"""Pull and push against a real registry (distribution 2.8), crossed with the real engine."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from cargohold.core import Runtime

from ..realdocker import DockerEngine
from .conftest import cargohold, ok
from .server import RegistryServer, outward_address, start_registry, stop_registry

pytestmark = pytest.mark.root

LISTING = "cat /data/a /data/sub/b /data/sub/c; ls /; busybox stat -c '%a %n' /data/a"


def _pushed_by_engine(engine: DockerEngine, registry: RegistryServer, image: str, name: str) -> str:
    remote = f"{registry.host}/{name}"
    engine.docker("tag", image, remote)
    engine.docker("push", remote)
    engine.docker("rmi", remote)
    return remote


def test_engine_push_cargohold_pull_run_push_engine_pull_run(
    docker_engine: DockerEngine, registry: RegistryServer, engine_image: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    remote = _pushed_by_engine(docker_engine, registry, engine_image, "engine/src:1")
    out = ok(cargohold("pull", remote, state=state))
    assert "1: Pulling from engine/src" in out
    assert out.count("Pull complete") == 3
    assert f"Status: Downloaded newer image for {remote}" in out
    assert out.strip().endswith(f"{remote}")
    expected = docker_docker_run(docker_engine, engine_image)
    assert ok(cargohold("run", "--rm", remote, "sh", "-c", LISTING, state=state)) == expected

    again = ok(cargohold("pull", remote, state=state))
    assert again.count("Already exists") == 3
    assert "Status: Image is up to date" in again

    other = f"{registry.host}/cargohold/copy:2"
    ok(cargohold("tag", remote, other, state=state))
    pushed = ok(cargohold("push", other, state=state))
    assert f"The push refers to repository [{registry.host}/cargohold/copy]" in pushed
    assert pushed.count("Mounted from engine/src") == 3  # cross-repository mounts, no upload
    assert re.search(r"^2: digest: sha256:[0-9a-f]{64} size: \d+$", pushed, re.M)
    assert ok(cargohold("push", other, state=state)).count("Layer already exists") == 3

    try:
        docker_engine.docker("pull", other)
        assert docker_docker_run(docker_engine, other) == expected
    finally:
        docker_engine.docker("rmi", "-f", other, check=False)


def docker_docker_run(engine: DockerEngine, image: str) -> str:
    return engine.docker("run", "--rm", "--network", "none", image, "sh", "-c", LISTING).stdout


def test_push_uploads_in_chunks_and_engine_runs_it(
    docker_engine: DockerEngine, registry: RegistryServer, tmp_path: Path
) -> None:
    """A layer cargohold made (never in the registry) is compressed and uploaded."""
    state = tmp_path / "state"
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "big").write_bytes(os.urandom(20 << 20))  # > a chunk
    tar = tmp_path / "rootfs.tar"
    shutil.make_archive(str(tar.with_suffix("")), "tar", rootfs)
    name = f"{registry.host}/cargohold/fresh:1"
    ok(cargohold("import", str(tar), name, "-c", 'CMD ["sh"]', state=state))
    out = ok(cargohold("push", name, state=state))
    assert "Pushed" in out
    try:
        docker_engine.docker("pull", name)
        size = docker_engine.docker("run", "--rm", name, "busybox", "stat", "-c", "%s", "/big")
        assert size.stdout.strip() == str(20 << 20)
    finally:
        docker_engine.docker("rmi", "-f", name, check=False)


def _assert_nothing_stored(state: Path) -> None:
    with Runtime(state) as rt:
        assert rt.images.list() == []
        blobs = rt.images.blobs
        assert not blobs.exists() or list(blobs.iterdir()) == []


def _fresh_push(registry: RegistryServer, tmp_path: Path, name: str) -> tuple[str, bytes]:
    """An image pushed by cargohold; its manifest's bytes as the registry stores them."""
    state = tmp_path / "pusher"
    rootfs = tmp_path / f"rootfs-{name.replace('/', '-')}"
    rootfs.mkdir()
    (rootfs / "file").write_bytes(os.urandom(300_000))
    tar = tmp_path / f"{rootfs.name}.tar"
    shutil.make_archive(str(tar.with_suffix("")), "tar", rootfs)
    remote = f"{registry.host}/{name}:1"
    ok(cargohold("import", str(tar), remote, state=state))
    ok(cargohold("push", remote, state=state))
    conn = http.client.HTTPConnection(registry.host)
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    conn.request("GET", f"/v2/{name}/manifests/1", headers={"Accept": accept})
    manifest = conn.getresponse().read()
    conn.close()
    return remote, manifest


def _first_layer(manifest: bytes) -> str:
    return str(json.loads(manifest)["layers"][0]["digest"])


def test_corrupt_blob_stores_nothing(registry: RegistryServer, tmp_path: Path) -> None:
    remote, manifest = _fresh_push(registry, tmp_path, "bad/corrupt")
    data = registry.blob_file(_first_layer(manifest))
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    state = tmp_path / "state"
    result = cargohold("pull", remote, state=state)
    assert result.returncode == 1
    assert "has digest sha256:" in result.stderr and "corrupt or was altered" in result.stderr
    _assert_nothing_stored(state)


def test_truncated_blob_stores_nothing(registry: RegistryServer, tmp_path: Path) -> None:
    remote, manifest = _fresh_push(registry, tmp_path, "bad/truncated")
    data = registry.blob_file(_first_layer(manifest))
    data.write_bytes(data.read_bytes()[:1000])
    state = tmp_path / "state"
    result = cargohold("pull", remote, state=state)
    assert result.returncode == 1
    assert "truncated" in result.stderr or "corrupt" in result.stderr
    _assert_nothing_stored(state)


def test_registry_failure_500_stores_nothing(registry: RegistryServer, tmp_path: Path) -> None:
    remote, manifest = _fresh_push(registry, tmp_path, "bad/broken")
    data = registry.blob_file(_first_layer(manifest))
    data.unlink()
    data.symlink_to("data")  # a loop: the registry's storage driver fails to read it
    state = tmp_path / "state"
    result = cargohold("pull", remote, state=state)
    assert result.returncode == 1
    assert "unknown error (HTTP 500); the registry failed" in result.stderr, result.stderr
    _assert_nothing_stored(state)
    data.unlink()  # now the blob is gone: 404
    result = cargohold("pull", remote, state=state)
    assert result.returncode == 1
    assert "blob unknown to registry (HTTP 404)" in result.stderr, result.stderr
    _assert_nothing_stored(state)


def test_unknown_tag_and_repository(registry: RegistryServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = cargohold("pull", f"{registry.host}/no/such:tag", state=state)
    assert result.returncode == 1
    assert "manifest for no/such:tag" in result.stderr or "no/such" in result.stderr
    assert "(HTTP 404)" in result.stderr
    bad = cargohold("pull", "UPPER/case", state=state)
    assert bad.returncode == 1 and "invalid reference format" in bad.stderr
    missing = cargohold("push", f"{registry.host}/not/here:1", state=state)
    assert missing.returncode == 1 and "no such image" in missing.stderr
    _assert_nothing_stored(state)


def test_index_platforms(registry: RegistryServer, tmp_path: Path) -> None:
    """An OCI index: the host's platform is chosen; an unknown one is a clear error."""
    from cargohold.core.images.config import host_architecture

    _, body = _fresh_push(registry, tmp_path, "multi/arch")
    manifest = json.loads(body)
    digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": digest,
                "size": len(body),
                "platform": {"os": "linux", "architecture": host_architecture()},
            }
        ],
    }
    conn = http.client.HTTPConnection(registry.host)
    conn.request(
        "PUT",
        "/v2/multi/arch/manifests/index",
        body=json.dumps(index).encode(),
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    assert conn.getresponse().status == 201
    conn.close()
    state = tmp_path / "state"
    wrong = cargohold(
        "pull", "--platform", "linux/riscv64", f"{registry.host}/multi/arch:index", state=state
    )
    assert wrong.returncode == 1
    assert "no image for platform linux/riscv64" in wrong.stderr
    assert f"linux/{host_architecture()}" in wrong.stderr
    _assert_nothing_stored(state)
    out = ok(cargohold("pull", f"{registry.host}/multi/arch:index", state=state))
    assert "Pull complete" in out
    by_digest = ok(cargohold("pull", f"{registry.host}/multi/arch@{digest}", state=state))
    assert "Already exists" in by_digest


def test_plain_http_only_for_loopback_or_named(registry: RegistryServer) -> None:
    from cargohold.core.images.distribution import Registry

    client = Registry(registry.host)  # loopback: HTTP allowed, as dockerd allows it
    client.check()
    assert client.scheme == "http"
    client.close()
    assert Registry("10.1.2.3:5000").insecure is False
    assert Registry("10.1.2.3:5000", insecure=["10.1.2.3:5000"]).insecure is True
    assert Registry("10.1.2.3:5000", insecure=["10.9.9.9:5000"]).insecure is False


def test_insecure_registry_must_be_named(registry: RegistryServer, tmp_path: Path) -> None:
    """Plain HTTP to a host that is not loopback only with --insecure-registry HOST."""
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    server = start_registry(tmp_path / "outward", address=address)
    try:
        _, _ = _fresh_push(registry, tmp_path, "plain/http")
        state = tmp_path / "state"
        name = f"{server.host}/plain/http:1"
        ok(cargohold("pull", f"{registry.host}/plain/http:1", state=state))
        ok(cargohold("tag", f"{registry.host}/plain/http:1", name, state=state))
        refused = cargohold("push", name, state=state)
        assert refused.returncode == 1
        assert f"name it with --insecure-registry {server.host}" in refused.stderr
        other = cargohold("push", "--insecure-registry", "10.9.9.9:1", name, state=state)
        assert other.returncode == 1  # naming another host does not help
        assert "Pushed" in ok(
            cargohold("push", "--insecure-registry", server.host, name, state=state)
        )
        env = {"CARGOHOLD_INSECURE_REGISTRIES": f"10.9.9.9:1,{server.host}"}
        assert "Layer already exists" in ok(cargohold("push", name, state=state, env=env))
    finally:
        stop_registry(server)
