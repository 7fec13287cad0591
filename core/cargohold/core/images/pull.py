"""``cargohold pull``: an image from a registry into the image store, verified.

The manifest (Docker schema 2 or OCI; an index or manifest list resolves to
the host's platform or ``--platform``) is checked against the digest asked
for and the one the registry names; the config against its descriptor.
Layers the store already holds (by diff id) are not fetched; the others are
fetched in parallel, each streamed once through a hash of the blob (checked
when the blob ends, with its size) and decompressed into the store's staging
area, where its diff id is checked against the config. The image and its
layers become visible in one transaction: any failure (a bad digest, a
truncated blob, a refused request, a cancelled transfer) leaves nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import CargoholdError, InvalidArgument, NotFound, NotSupported
from cargohold.core.images.blobindex import Blob, BlobIndex
from cargohold.core.images.config import host_architecture, parse_json
from cargohold.core.images.credentials import open_registry
from cargohold.core.images.distribution import (
    Credentials,
    Registry,
    RemoteReference,
    parse_remote,
    pull_scope,
)
from cargohold.core.images.ingest import Ingest
from cargohold.core.images.layer_progress import LayerProgress
from cargohold.core.images.records import Image
from cargohold.core.images.store import ImageStore

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
_FOREIGN = ("foreign", "nondistributable")
_MANIFEST_LIMIT = 4 << 20
_CONFIG_LIMIT = 16 << 20
JOBS = 3  # dockerd's max-concurrent-downloads


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(text: str | None) -> Platform:
    """``linux/amd64``, ``linux/arm64/v8``; None means this host."""
    if not text:
        return Platform("linux", host_architecture())
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(
            f"invalid platform {text!r}: write os/arch[/variant], e.g. linux/amd64"
        )
    return Platform(*parts)


@dataclass(frozen=True)
class PullResult:
    image: Image
    reference: RemoteReference
    digest: str
    downloaded: bool


def _get_manifest(
    registry: Registry, remote: RemoteReference, reference: str, expect: str | None
) -> tuple[bytes, str, str]:
    """The manifest bytes, their digest and media type; digests checked."""
    response = registry.request(
        "GET",
        f"/v2/{remote.repository}/manifests/{reference}",
        scope=pull_scope(remote.repository),
        headers={"Accept": _ACCEPT},
        what=f"manifest for {remote}",
    )
    body = response.read(_MANIFEST_LIMIT + 1)
    if len(body) > _MANIFEST_LIMIT:
        raise InvalidArgument(f"manifest for {remote} is larger than {_MANIFEST_LIMIT} bytes")
    digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
    named = response.header("Docker-Content-Digest")
    for wanted, source in ((expect, "asked for"), (named or None, "the registry named")):
        if wanted is not None and wanted.startswith("sha256:") and wanted != digest:
            raise InvalidArgument(
                f"manifest for {remote} has digest {digest}, not {wanted} that {source}: "
                "the registry's copy is corrupt or was altered; nothing was stored"
            )
    media = response.header("Content-Type").split(";")[0].strip()
    parsed = parse_json(body, f"manifest for {remote}")
    if isinstance(parsed, dict) and parsed.get("mediaType"):
        media = str(parsed["mediaType"])
    if isinstance(parsed, dict) and parsed.get("schemaVersion") == 1:
        raise NotSupported(f"{remote} has a schema 1 manifest; push it again with a newer client")
    return body, digest, media


def _choose(index: Mapping[str, Any], platform: Platform, remote: RemoteReference) -> str:
    """The digest of the index's manifest for ``platform``."""
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    offered: list[str] = []
    for entry in manifests:
        plat = entry.get("platform") or {}
        found = Platform(
            str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", ""))
        )
        if found.architecture == "unknown":  # attestations, not images
            continue
        offered.append(str(found))
        if (found.os, found.architecture) == (platform.os, platform.architecture) and (
            not platform.variant or found.variant in ("", platform.variant)
        ):
            return str(entry.get("digest"))
    raise NotFound(
        f"{remote} has no image for platform {platform} (it offers "
        f"{', '.join(offered) or 'none'}); choose one with --platform"
    )


def resolve_manifest(
    registry: Registry, remote: RemoteReference, platform: Platform
) -> tuple[dict[str, Any], str]:
    """The image manifest for ``platform`` and the digest of what ``remote`` names."""
    body, top_digest, media = _get_manifest(registry, remote, remote.reference, remote.digest)
    if media in (DOCKER_LIST, OCI_INDEX):
        child = _choose(parse_json(body, f"index of {remote}"), platform, remote)
        body, _, media = _get_manifest(registry, remote, child, child)
    if media not in (DOCKER_MANIFEST, OCI_MANIFEST):
        raise NotSupported(f"{remote}: manifest type {media or 'unknown'} is not an image")
    manifest = parse_json(body, f"manifest for {remote}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise InvalidArgument(f"manifest for {remote} has no config descriptor")
    return manifest, top_digest


class _Blob:
    """A blob response read once: hashed, sized and checked as its last byte arrives."""

    def __init__(
        self,
        raw: Any,
        descriptor: Blob,
        what: str,
        report: Any,
        cancel: threading.Event,
    ) -> None:
        self.raw = raw
        self.blob = descriptor
        self.what = what
        self.report = report
        self.cancel = cancel
        self.hash = hashlib.sha256()
        self.size = 0
        self.done = False

    def read(self, n: int = -1) -> bytes:
        if self.cancel.is_set():
            raise CargoholdError(f"{self.what}: stopped, another transfer failed")
        if self.done:
            return b""
        data: bytes = self.raw.read(1 << 20 if n < 0 else n)
        if data:
            self.hash.update(data)
            self.size += len(data)
            if self.size > self.blob.size:
                raise InvalidArgument(f"{self.what} is longer than its {self.blob.size} bytes")
            self.report(self.size)
            return data
        self.done = True
        if self.size != self.blob.size:
            raise InvalidArgument(
                f"{self.what} is truncated: {self.size} of {self.blob.size} bytes arrived"
            )
        digest = f"sha256:{self.hash.hexdigest()}"
        if digest != self.blob.digest:
            raise InvalidArgument(
                f"{self.what} has digest {digest}, not {self.blob.digest}: the registry's copy "
                "is corrupt or was altered"
            )
        return b""

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _descriptor(entry: Any, what: str) -> Blob:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{what}: malformed descriptor")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise InvalidArgument(f"{what}: descriptor digest {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or size < 0:
        raise InvalidArgument(f"{what}: descriptor size {size!r} is not a byte count")
    return Blob(digest, size, str(entry.get("mediaType", "")))


def fetch_config(registry: Registry, remote: RemoteReference, descriptor: Blob) -> bytes:
    if descriptor.size > _CONFIG_LIMIT:
        raise InvalidArgument(f"image config of {remote} is larger than {_CONFIG_LIMIT} bytes")
    response = registry.request(
        "GET",
        f"/v2/{remote.repository}/blobs/{descriptor.digest}",
        scope=pull_scope(remote.repository),
        what=f"image config {descriptor.digest} of {remote}",
    )
    blob = _Blob(
        response, descriptor, f"image config of {remote}", lambda _: None, threading.Event()
    )
    chunks = []
    while chunk := blob.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def pull(
    state_dir: Path,
    store: ImageStore,
    ref: str,
    *,
    platform: str | None = None,
    insecure: tuple[str, ...] = (),
    progress: LayerProgress | None = None,
    jobs: int = JOBS,
    credentials: Credentials | None = None,
) -> PullResult:
    """Pull ``ref`` (``[registry/]name[:tag|@digest]``) into ``store``.

    ``credentials`` replace the stored login (the Engine API passes the client's).
    """
    remote = parse_remote(ref)
    show = progress or LayerProgress(quiet=True)
    wanted = parse_platform(platform)
    registry = open_registry(state_dir, remote.registry, insecure=insecure, credentials=credentials)
    try:
        if remote.tag is None and remote.digest is None:
            show.message("Using default tag: latest")
        manifest, digest = resolve_manifest(registry, remote, wanted)
        config_blob = _descriptor(manifest["config"], f"config of {remote}")
        config = fetch_config(registry, remote, config_blob)
        parsed = parse_json(config, f"image config of {remote}")
        if not isinstance(parsed, dict):
            raise InvalidArgument(f"image config of {remote} is not a JSON object")
        arch = parsed.get("architecture")
        if platform is not None and arch and arch != wanted.architecture:
            raise NotFound(
                f"{remote} was found but is for {parsed.get('os', 'linux')}/{arch}, not {wanted}"
            )
        diff_ids = list((parsed.get("rootfs") or {}).get("diff_ids") or [])
        layers = [_descriptor(d, f"layer of {remote}") for d in manifest.get("layers") or []]
        if len(diff_ids) != len(layers):
            raise InvalidArgument(
                f"{remote}: the config lists {len(diff_ids)} layers, the manifest {len(layers)}"
            )
        for layer in layers:
            if any(word in layer.media_type for word in _FOREIGN):
                raise NotSupported(
                    f"{remote} has a foreign layer {layer.digest}; it cannot be pulled"
                )
        image_id = f"sha256:{hashlib.sha256(config).hexdigest()}"
        tag = remote.local_tag
        show.message(f"{remote.tag or remote.digest or 'latest'}: Pulling from {remote.repository}")
        try:
            known = store.get(image_id)
        except NotFound:
            known = None
        with store.ingest() as ingest:
            todo = [
                (layer, diff_id)
                for layer, diff_id in zip(layers, diff_ids, strict=True)
                if not ingest.has_layer(diff_id)
            ]
            for layer, diff_id in zip(layers, diff_ids, strict=True):
                if (layer, diff_id) not in todo:
                    show.status(layer.digest[7:19], "Already exists")
            _download_all(registry, remote, ingest, todo, show, jobs)
            ingest.image(config, diff_ids, [tag] if tag else [])
        index = BlobIndex(store.root)
        try:
            pairs = zip(diff_ids, layers, strict=True)
            index.record_all(pairs, remote.registry, remote.repository)
        finally:
            index.close()
        (image,) = ingest.images
        show.message(f"Digest: {digest}")
        downloaded = known is None or (tag is not None and tag not in known.repo_tags)
        word = "Downloaded newer image" if downloaded else "Image is up to date"
        show.message(f"Status: {word} for {remote}")
        return PullResult(image, remote, digest, downloaded)
    finally:
        registry.close()


def _download_all(
    registry: Registry,
    remote: RemoteReference,
    ingest: Ingest,
    todo: list[tuple[Blob, str]],
    show: LayerProgress,
    jobs: int,
) -> None:
    if not todo:
        return
    cancel = threading.Event()
    for layer, _ in todo:
        show.status(layer.digest[7:19], "Pulling fs layer")

    def fetch(layer: Blob, diff_id: str) -> None:
        short = layer.digest[7:19]
        try:
            response = registry.request(
                "GET",
                f"/v2/{remote.repository}/blobs/{layer.digest}",
                scope=pull_scope(remote.repository),
                what=f"layer {layer.digest} of {remote}",
            )
            blob = _Blob(
                response,
                layer,
                f"layer {layer.digest} of {remote}",
                lambda done: show.transfer(short, "Downloading", done, layer.size),
                cancel,
            )
            try:
                ingest.layer(blob, diff_id, f"layer {layer.digest} of {remote}")
            except InvalidArgument:
                # gzip's own check fails before the blob ends: a wrong digest says more
                blob.drain()
                raise
            blob.drain()  # a gzip stream may end before the blob's last bytes
        except BaseException:
            cancel.set()
            raise
        show.status(short, "Download complete")

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="pull") as pool:
        futures = [pool.submit(fetch, layer, diff_id) for layer, diff_id in todo]
        errors = [f.exception() for f in futures]
    # the first error that is not just "stopped because another failed"
    real = [e for e in errors if e is not None and "another transfer failed" not in str(e)]
    if real or any(errors):
        raise (real or [e for e in errors if e is not None])[0]
    for layer, _ in todo:
        show.status(layer.digest[7:19], "Pull complete")
