"""Image archives built byte by byte, to test loading without an engine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: Sequence[bytes], run_config: Mapping[str, Any] | None = None) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": dict(run_config or {}),
            "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
        }
    ).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def docker_archive(
    path: Path,
    layers: Sequence[bytes],
    tags: Sequence[str] = ("demo:1",),
    run_config: Mapping[str, Any] | None = None,
    *,
    config: bytes | None = None,
    blobs: bool = False,
) -> Path:
    """A ``docker save`` archive: layers at ``<n>/layer.tar`` as docker 20.10 writes, or
    with ``blobs`` at ``blobs/sha256/<digest>`` as docker 25 and later write."""
    config = config or config_for(layers, run_config)
    config_name = sha(config).removeprefix("sha256:") + ".json"
    if blobs:
        config_name = "blobs/sha256/" + config_name.removesuffix(".json")
    with tarfile.open(path, "w") as tar:
        _add(tar, config_name, config)
        names = []
        for i, data in enumerate(layers):
            names.append(f"blobs/sha256/{sha(data)[7:]}" if blobs else f"layer{i}/layer.tar")
            _add(tar, names[-1], data)
        manifest = [{"Config": config_name, "RepoTags": list(tags), "Layers": names}]
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def oci_layout(
    root: Path,
    layers: Sequence[bytes],
    ref: str | None = "demo:oci",
    run_config: Mapping[str, Any] | None = None,
    *,
    compress: bool = True,
) -> Path:
    """An OCI image layout directory; layers gzip-compressed unless ``compress`` is False."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        (blobs / sha(data).removeprefix("sha256:")).write_bytes(data)
        return {"mediaType": media_type, "digest": sha(data), "size": len(data)}

    layer_kind = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    layer_descs = [
        blob(gzip.compress(data, mtime=0) if compress else data, layer_kind) for data in layers
    ]
    config_desc = blob(config_for(layers, run_config), "application/vnd.oci.image.config.v1+json")
    manifest = json.dumps(
        {"schemaVersion": 2, "config": config_desc, "layers": layer_descs}
    ).encode()
    manifest_desc = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
    if ref:
        manifest_desc["annotations"] = {
            "io.containerd.image.name": ref,
            "org.opencontainers.image.ref.name": ref.rpartition(":")[2],
        }
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}))
    return root


def tar_directory(source: Path, path: Path) -> Path:
    """``source``'s contents as a tar at ``path`` (an OCI archive from a layout)."""
    with tarfile.open(path, "w") as tar:
        for item in sorted(source.rglob("*")):
            tar.add(item, arcname=str(item.relative_to(source)), recursive=False)
    return path
