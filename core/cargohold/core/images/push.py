"""``cargohold push``: an image from the store to a registry, as a Docker schema 2 image.

Each layer is offered the cheap ways first, as docker does: a blob the
index (`blobindex`) knows for this layer is looked for in the target
repository (``HEAD``), then mounted from another repository of the same
registry that has it (``POST ...?mount=&from=``). Only a layer neither finds
is compressed (gzip, deterministic: no name, no time) and uploaded in chunks
(``PATCH`` with ``Content-Range``, then ``PUT ?digest=``), several layers at
once. The config goes up next, and the manifest last: until the manifest is
put, the registry names nothing new, so a failed push changes no tag.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cargohold.core.api.errors import CargoholdError, InvalidArgument
from cargohold.core.images.blobindex import Blob, BlobIndex
from cargohold.core.images.config import normalize_reference
from cargohold.core.images.credentials import open_registry
from cargohold.core.images.distribution import (
    Credentials,
    Registry,
    RemoteReference,
    parse_remote,
    pull_scope,
    push_scope,
)
from cargohold.core.images.layer_progress import LayerProgress
from cargohold.core.images.pull import DOCKER_CONFIG, DOCKER_MANIFEST
from cargohold.core.images.store import ImageStore

GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_GZIP_TYPES = (GZIP_LAYER, "application/vnd.oci.image.layer.v1.tar+gzip")
CHUNK = 16 << 20  # bytes per PATCH
# zlib level 1: about three times the speed of level 6 for some 10% more bytes,
# the right trade for registries on a LAN or this host
LEVEL = 1
JOBS = 3  # dockerd's max-concurrent-uploads is 5; compression is CPU-bound


@dataclass(frozen=True)
class PushResult:
    reference: RemoteReference
    digest: str
    size: int


def _upload_location(registry: Registry, remote: RemoteReference, what: str) -> str:
    response = registry.request(
        "POST",
        f"/v2/{remote.repository}/blobs/uploads/",
        scope=push_scope(remote.repository),
        body=b"",
        expect=(202,),
        what=what,
    )
    response.read()
    location = response.header("Location")
    if not location:
        raise InvalidArgument(f"{what}: the registry gave no upload location")
    return location


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _exists(registry: Registry, remote: RemoteReference, digest: str) -> bool:
    try:
        registry.request(
            "HEAD",
            f"/v2/{remote.repository}/blobs/{digest}",
            scope=push_scope(remote.repository),
            what=f"blob {digest}",
        ).read()
    except CargoholdError as err:
        if getattr(err, "http_status", 0) == 404:
            return False
        raise
    return True


def _mount(registry: Registry, remote: RemoteReference, digest: str, source: str) -> bool:
    """Cross-repository mount; False if the registry started an upload instead."""
    response = registry.request(
        "POST",
        f"/v2/{remote.repository}/blobs/uploads/?mount={digest}&from={source}",
        scope=f"{push_scope(remote.repository)} {pull_scope(source)}",
        body=b"",
        expect=(201, 202),
        what=f"mount of {digest} from {source}",
    )
    response.read()
    if response.status == 201:
        return True
    location = response.header("Location")
    if location:  # an upload we will not use: let the registry forget it
        with contextlib.suppress(CargoholdError):
            registry.request(
                "DELETE", location, scope=push_scope(remote.repository), expect=(204, 404)
            ).read()
    return False


def _upload_layer(
    registry: Registry,
    remote: RemoteReference,
    path: Path,
    report: LayerProgress,
    short: str,
    cancel: threading.Event,
) -> Blob:
    """Compress ``path`` and upload it in chunks; the blob that was stored."""
    what = f"upload of layer {short} to {remote.name}"
    location = _upload_location(registry, remote, what)
    total = path.stat().st_size
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # 31: a gzip stream, mtime 0
    digest = hashlib.sha256()
    pending = bytearray()
    sent = read = 0

    def patch(data: bytes) -> None:
        nonlocal location, sent
        response = registry.request(
            "PATCH",
            location,
            scope=push_scope(remote.repository),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{sent}-{sent + len(data) - 1}",
            },
            body=data,
            expect=(202,),
            what=what,
        )
        response.read()
        location = response.header("Location") or location
        sent += len(data)

    with open(path, "rb") as layer:
        while chunk := layer.read(1 << 20):
            if cancel.is_set():
                raise CargoholdError(f"{what}: stopped, another transfer failed")
            read += len(chunk)
            pending += compressor.compress(chunk)
            report.transfer(short, "Pushing", read, total)
            if len(pending) >= CHUNK:
                data = bytes(pending[:CHUNK])
                del pending[:CHUNK]
                digest.update(data)
                patch(data)
    pending += compressor.flush()
    if pending:
        digest.update(pending)
        patch(bytes(pending))
    blob = Blob(f"sha256:{digest.hexdigest()}", sent, GZIP_LAYER)
    registry.request(
        "PUT",
        _with_digest(location, blob.digest),
        scope=push_scope(remote.repository),
        body=b"",
        expect=(201,),
        what=what,
    ).read()
    return blob


def _push_bytes(registry: Registry, remote: RemoteReference, data: bytes, what: str) -> str:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if not _exists(registry, remote, digest):
        location = _upload_location(registry, remote, what)
        registry.request(
            "PUT",
            _with_digest(location, digest),
            scope=push_scope(remote.repository),
            headers={"Content-Type": "application/octet-stream"},
            body=data,
            expect=(201,),
            what=what,
        ).read()
    return digest


def push(
    state_dir: Path,
    store: ImageStore,
    ref: str,
    *,
    insecure: tuple[str, ...] = (),
    progress: LayerProgress | None = None,
    jobs: int = JOBS,
    credentials: Credentials | None = None,
) -> PushResult:
    """Push the image tagged ``ref`` (``[registry/]name[:tag]``) to its registry.

    ``credentials`` replace the stored login (the Engine API passes the client's).
    """
    if "@" in ref:
        raise InvalidArgument(f"cannot push by digest ({ref}): push a name[:tag]")
    normal = normalize_reference(ref)
    remote = parse_remote(normal)
    show = progress or LayerProgress(quiet=True)
    image = store.get(normal)
    config = store.config_bytes(image.id)
    show.message(f"The push refers to repository [{remote.registry}/{remote.repository}]")
    registry = open_registry(state_dir, remote.registry, insecure=insecure, credentials=credentials)
    index = BlobIndex(store.root)
    cancel = threading.Event()
    try:
        registry.check()
        diff_ids = list(image.diff_ids)
        for diff_id in reversed(diff_ids):  # docker lists the top layer first
            show.status(diff_id[7:19], "Preparing")

        def one(diff_id: str) -> Blob:
            short = diff_id[7:19]
            try:
                return _push_layer(registry, remote, index, store, diff_id, show, short, cancel)
            except BaseException:
                cancel.set()
                raise

        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="push") as pool:
            futures = [pool.submit(one, d) for d in diff_ids]
            errors = [f.exception() for f in futures]
        real = [e for e in errors if e is not None and "another transfer failed" not in str(e)]
        if any(errors):
            raise (real or [e for e in errors if e is not None])[0]
        layers = [f.result() for f in futures]
        config_digest = _push_bytes(registry, remote, config, f"config of {remote.name}")
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": DOCKER_CONFIG,
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": [
                    {"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in layers
                ],
            },
            indent=3,
        ).encode()
        tag = remote.tag or "latest"
        response = registry.request(
            "PUT",
            f"/v2/{remote.repository}/manifests/{tag}",
            scope=push_scope(remote.repository),
            headers={"Content-Type": DOCKER_MANIFEST},
            body=manifest,
            expect=(201,),
            what=f"manifest of {remote}",
        )
        response.read()
        digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
        named = response.header("Docker-Content-Digest")
        if named and named != digest:
            raise InvalidArgument(
                f"the registry stored the manifest of {remote} as {named}, not {digest}"
            )
        show.message(f"{tag}: digest: {digest} size: {len(manifest)}")
        return PushResult(remote, digest, len(manifest))
    finally:
        index.close()
        registry.close()


def _push_layer(
    registry: Registry,
    remote: RemoteReference,
    index: BlobIndex,
    store: ImageStore,
    diff_id: str,
    show: LayerProgress,
    short: str,
    cancel: threading.Event,
) -> Blob:
    """One layer up the cheapest way; the blob the manifest names."""
    for blob in index.blobs(diff_id):
        if blob.media_type not in _GZIP_TYPES and not blob.media_type.endswith(".tar"):
            continue
        if _exists(registry, remote, blob.digest):
            index.record(diff_id, blob, remote.registry, remote.repository)
            show.status(short, "Layer already exists")
            return blob
        for source in index.repositories(blob.digest, remote.registry):
            if source == remote.repository:
                index.forget(blob.digest, remote.registry, source)  # it was deleted there
                continue
            if _mount(registry, remote, blob.digest, source):
                index.record(diff_id, blob, remote.registry, remote.repository)
                show.status(short, f"Mounted from {source}")
                return blob
    blob = _upload_layer(registry, remote, store.layer_path(diff_id), show, short, cancel)
    index.record(diff_id, blob, remote.registry, remote.repository)
    show.status(short, "Pushed")
    return blob
