"""Reading docker-archive and OCI image archives, and writing docker-archives.

`read_archive` parses what a ``docker save`` archive (``manifest.json``) or
an OCI layout (``index.json``, a directory or a tar) says, checking every
digest it can without reading layers: configs and manifests against their
names and descriptors, layer counts against ``rootfs.diff_ids``. The image
store then streams each layer once, checking its digests as it copies it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from cargohold.core.api.errors import InvalidArgument, NotSupported
from cargohold.core.images.config import host_architecture, normalize_reference, parse_json
from cargohold.core.images.layers import LayerError, clean_name

DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_HEX = re.compile(r"[0-9a-f]{64}")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, raw: Reader) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return f"sha256:{self.hash.hexdigest()}"


class Counted:
    """A reader that reports the size of every chunk read through it (for progress)."""

    def __init__(self, raw: Reader, report: Callable[[int], None]) -> None:
        self.raw = raw
        self.report = report

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.report(len(data))
        return data


class CountedWriter:
    """A binary sink that reports the size of every chunk written to it (for progress)."""

    def __init__(self, raw: IO[bytes], report: Callable[[int], None]) -> None:
        self.raw = raw
        self.report = report

    def write(self, data: bytes) -> int:
        written = self.raw.write(data)
        self.report(len(data))
        return written


class Prepend:
    """A reader giving ``head`` and then the rest of ``raw`` (to sniff magic bytes)."""

    def __init__(self, head: bytes, raw: Reader) -> None:
        self.head = head
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            return data
        return self.raw.read(n)


class Source:
    """Files of a docker-archive or OCI layout, from a tar or a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            return
        try:
            self.tar = tarfile.open(path, _tar_mode(path))  # noqa: SIM115 - closed by close()
            for member in self.tar:
                self.members[clean_name(member.name, "archive entry")] = member
        except (tarfile.TarError, EOFError, zlib.error, OSError, LayerError) as err:
            reason = str(err).splitlines()[-1].removeprefix("- method ")
            raise InvalidArgument(
                f"cannot read image archive {path}: {reason}; is it a complete "
                "docker save or OCI archive?"
            ) from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        rel = clean_name(name, "archive path")
        if self.tar is not None:
            return rel in self.members
        return (self.path / rel).is_file()

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        rel = clean_name(name, "archive path")
        if self.tar is None:
            full = self.path / rel
            if full.is_symlink() or not full.is_file():
                raise InvalidArgument(f"image layout {self.path} lacks the file {name}")
            with open(full, "rb") as f:
                yield f
            return
        member = self.members.get(rel)
        # follow the archive's own links (docker save links repeated layers)
        for _ in range(8):
            if member is None or (not member.islnk() and not member.issym()):
                break
            target = member.linkname
            if member.issym():
                target = os.path.join(os.path.dirname(rel), target)
            rel = clean_name(target, "archive link")
            member = self.members.get(rel)
        stream = self.tar.extractfile(member) if member is not None else None
        if stream is None:
            raise InvalidArgument(f"image archive {self.path} lacks the file {name}")
        with stream:
            yield stream

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"{name} in {self.path} is larger than {limit} bytes")
        return data


def _tar_mode(path: Path) -> Literal["r:", "r:gz", "r:bz2", "r:xz"]:
    """The tarfile mode for an archive, by its first bytes (so errors name one format)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(GZIP_MAGIC):
        return "r:gz"
    if head.startswith(b"BZh"):
        return "r:bz2"
    if head.startswith(b"\xfd7zXZ"):
        return "r:xz"
    return "r:"


@dataclass(frozen=True)
class ArchiveLayer:
    """One layer file of an archive and the digests it must have."""

    name: str
    diff_id: str
    #: the digest of the file as stored (compressed or not), when the archive names it
    digest: str | None


@dataclass(frozen=True)
class ArchiveImage:
    config: bytes
    diff_ids: list[str]
    tags: list[str]
    layers: list[ArchiveLayer]


def read_archive(source: Source) -> list[ArchiveImage]:
    """The images in ``source``; `InvalidArgument` for anything malformed or altered."""
    if source.exists("manifest.json"):
        return _docker_archive(source)
    if source.exists("index.json"):
        return _oci(source)
    raise InvalidArgument(
        f"{source.path} is neither a docker-archive (no manifest.json) nor an OCI layout "
        "(no index.json)"
    )


def _docker_archive(source: Source) -> list[ArchiveImage]:
    manifest = parse_json(source.read("manifest.json"), f"manifest.json of {source.path}")
    if not isinstance(manifest, list) or not manifest:
        raise InvalidArgument(f"manifest.json of {source.path} lists no images")
    images = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument(f"manifest.json of {source.path} has a malformed entry")
        config_name = entry["Config"]
        config = source.read(config_name)
        _check_named_digest(config_name, f"sha256:{hashlib.sha256(config).hexdigest()}")
        names = entry.get("Layers") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidArgument(f"manifest.json of {source.path} has malformed Layers")
        diff_ids = _config_diff_ids(config, len(names), config_name)
        layers = [
            ArchiveLayer(name, diff_id, _named_digest(name))
            for name, diff_id in zip(names, diff_ids, strict=True)
        ]
        tags = [normalize_reference(t) for t in entry.get("RepoTags") or []]
        images.append(ArchiveImage(config, diff_ids, tags, layers))
    return images


def _config_diff_ids(config: bytes, layer_count: int, what: str) -> list[str]:
    parsed = parse_json(config, f"image config {what}")
    diff_ids = (parsed.get("rootfs") or {}).get("diff_ids") if isinstance(parsed, dict) else None
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and DIGEST.fullmatch(d) for d in diff_ids
    ):
        raise InvalidArgument(f"image config {what} has no valid rootfs.diff_ids")
    if len(diff_ids) != layer_count:
        raise InvalidArgument(
            f"image config {what} lists {len(diff_ids)} layers but the manifest has {layer_count}"
        )
    return diff_ids


def _oci(source: Source) -> list[ArchiveImage]:
    index = parse_json(source.read("index.json"), f"index.json of {source.path}")
    images = []
    for descriptor, name in _oci_manifests(source, index, None):
        manifest = parse_json(_oci_blob(source, descriptor), f"manifest {descriptor}")
        config_desc = manifest.get("config") if isinstance(manifest, dict) else None
        if not isinstance(config_desc, dict):
            raise InvalidArgument(f"OCI manifest {descriptor.get('digest')} has no config")
        config = _oci_blob(source, config_desc)
        descriptors = manifest.get("layers") or []
        diff_ids = _config_diff_ids(config, len(descriptors), str(config_desc.get("digest")))
        layers = []
        for desc, diff_id in zip(descriptors, diff_ids, strict=True):
            digest = _descriptor_digest(desc)
            layers.append(ArchiveLayer(f"blobs/sha256/{digest}", diff_id, f"sha256:{digest}"))
        tags = [normalize_reference(name)] if name else []
        images.append(ArchiveImage(config, diff_ids, tags, layers))
    if not images:
        raise InvalidArgument(f"OCI index of {source.path} lists no image manifest")
    return images


def _oci_manifests(
    source: Source, index: Any, name: str | None, depth: int = 0
) -> Iterator[tuple[dict[str, Any], str | None]]:
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument(f"OCI index in {source.path} is malformed")
    if depth > 4:
        raise InvalidArgument(f"OCI indexes in {source.path} nest too deep")
    children = [d for d in index["manifests"] if isinstance(d, dict)]
    if depth > 0:
        children = _pick_platform(children)
    for descriptor in children:
        annotations = descriptor.get("annotations") or {}
        ref = annotations.get("io.containerd.image.name") or name
        short = annotations.get("org.opencontainers.image.ref.name")
        if not ref and short and ("/" in short or ":" in short):
            ref = short
        media = descriptor.get("mediaType")
        if media in (OCI_INDEX, DOCKER_LIST):
            nested = parse_json(_oci_blob(source, descriptor), "nested OCI index")
            yield from _oci_manifests(source, nested, ref, depth + 1)
        elif media in MANIFESTS:
            yield descriptor, ref


def _oci_blob(source: Source, descriptor: Mapping[str, Any]) -> bytes:
    digest = _descriptor_digest(descriptor)
    data = source.read(f"blobs/sha256/{digest}")
    if hashlib.sha256(data).hexdigest() != digest:
        raise InvalidArgument(
            f"blob sha256:{digest} in {source.path} does not match its digest: "
            "the archive is corrupt or was altered"
        )
    return data


def _descriptor_digest(descriptor: Mapping[str, Any]) -> str:
    digest = descriptor.get("digest")
    match = DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidArgument(f"descriptor digest {digest!r} is not a sha256 digest")
    return match.group(1)


def _named_digest(name: str) -> str | None:
    """The digest a file's name gives (``<hex>.json``, ``blobs/sha256/<hex>``), if any."""
    stem = os.path.basename(name).removesuffix(".json")
    return f"sha256:{stem}" if _HEX.fullmatch(stem) else None


def _check_named_digest(name: str, actual: str) -> None:
    expected = _named_digest(name)
    if expected is not None and actual != expected:
        raise InvalidArgument(
            f"{name} has digest {actual}, not the one its name gives: the archive is corrupt "
            "or was altered"
        )


def check_layer_digest(layer: ArchiveLayer, actual: str) -> None:
    """Refuse a layer file whose stored bytes do not have the digest the archive gives."""
    if layer.digest is not None and actual != layer.digest:
        raise InvalidArgument(
            f"layer {layer.name} has digest {actual}, not {layer.digest}: the archive is "
            "corrupt or was altered"
        )


def _pick_platform(descriptors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From a multi-platform index, the manifest for this machine (or the only one)."""
    arch = host_architecture()
    for d in descriptors:
        plat = d.get("platform") or {}
        if plat.get("os", "linux") == "linux" and plat.get("architecture") == arch:
            return [d]
    real = [d for d in descriptors if (d.get("platform") or {}).get("architecture") != "unknown"]
    if len(real) == 1:
        return real
    raise NotSupported(f"the image has no variant for linux/{arch}")


# -- writing -------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    image_id: str
    config: bytes
    diff_ids: Sequence[str]
    tags: Sequence[str]


def write_docker_archive(
    out: IO[bytes], images: Sequence[SavedImage], layer_path: Callable[[str], Path]
) -> None:
    """A docker-archive as ``docker save`` (20.10) writes: ``docker load`` reads it.

    Layers go in uncompressed as ``<diff-id hex>/layer.tar``, each once.
    """
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for image in images:
            hex_id = image.image_id.removeprefix("sha256:")
            _add_bytes(tar, f"{hex_id}.json", image.config)
            layer_names: list[str] = []
            for diff_id in image.diff_ids:
                folder = diff_id.removeprefix("sha256:")
                name = f"{folder}/layer.tar"
                if folder not in written:
                    _add_dir(tar, folder)
                    _add_bytes(tar, f"{folder}/VERSION", b"1.0")
                    path = layer_path(diff_id)
                    info = tarfile.TarInfo(name)
                    info.size = path.stat().st_size
                    info.mode = 0o644
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                    written.add(folder)
                layer_names.append(name)
            manifest.append(
                {
                    "Config": f"{hex_id}.json",
                    "RepoTags": list(image.tags) or None,
                    "Layers": layer_names,
                }
            )
            for tag in image.tags:
                repo, _, version = tag.rpartition(":")
                if layer_names:
                    repositories.setdefault(repo, {})[version] = layer_names[-1].split("/")[0]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)
