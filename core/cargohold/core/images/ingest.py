"""Staging what arrives (from an archive or a registry) until the store commits it at once."""

from __future__ import annotations

import builtins
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from cargohold.core.api.errors import InvalidArgument, NotFound, NotSupported
from cargohold.core.images.records import Image

if TYPE_CHECKING:
    from cargohold.core.images.archives import Reader
    from cargohold.core.images.store import ImageStore, Progress


@dataclass
class StagedImage:
    config: bytes
    diff_ids: list[str]
    tags: list[str]


@dataclass
class Staging:
    """Layers written to ``tmp/<id>/`` and images read, waiting to be committed."""

    dir: Path
    layers: dict[str, tuple[Path, int]] = field(default_factory=dict)
    images: list[StagedImage] = field(default_factory=list)


class Ingest:
    """Layers and images arriving from elsewhere (a registry); see `ImageStore.ingest`."""

    def __init__(self, store: ImageStore, staging: Staging) -> None:
        self._store = store
        self._staging = staging
        self.images: builtins.list[Image] = []

    def has_layer(self, diff_id: str) -> bool:
        """True (and the layer counted in) if the store already holds ``diff_id``."""
        try:
            path = self._store.layer_path(diff_id)
        except NotFound:
            return False
        self._staging.layers.setdefault(diff_id, (path, path.stat().st_size))
        return True

    def layer(self, stream: Reader, diff_id: str, what: str) -> None:
        """Stage a layer (plain or gzip tar) whose content must have ``diff_id``.

        Safe to call from several threads at once.
        """
        stage_layer(self._staging, stream, diff_id, what)

    def image(self, config: bytes, diff_ids: Sequence[str], tags: Sequence[str]) -> None:
        self._staging.images.append(StagedImage(config, list(diff_ids), list(tags)))


def stage_layer(
    staging: Staging,
    stream: Reader,
    expect: str | None,
    what: str,
    progress: Progress | None = None,
) -> str:
    """Decompress ``stream`` into staging; return its diff id (checked if ``expect``).

    ``progress`` is told the size of each chunk read from ``stream``.
    """
    import gzip
    import hashlib
    import tarfile
    import zlib

    from cargohold.core.images.archives import GZIP_MAGIC, ZSTD_MAGIC, Counted, Prepend
    from cargohold.core.images.layers import check_layer

    if progress is not None:
        stream = Counted(stream, progress)
    head = stream.read(4)
    chained: Reader = Prepend(head, stream)
    if head.startswith(GZIP_MAGIC):
        chained = gzip.GzipFile(fileobj=cast(IO[bytes], chained), mode="rb")
    elif head == ZSTD_MAGIC:
        raise NotSupported(f"{what} is zstd-compressed; cargohold reads plain and gzip layers")
    out_path = staging.dir / uuid.uuid4().hex
    plain = hashlib.sha256()
    size = 0
    try:
        with open(out_path, "wb") as out:
            while chunk := chained.read(1 << 20):
                plain.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except (gzip.BadGzipFile, EOFError, zlib.error, tarfile.TarError) as err:
        raise InvalidArgument(f"{what} is corrupt or truncated: {err}") from None
    diff_id = f"sha256:{plain.hexdigest()}"
    if expect is not None and diff_id != expect:
        raise InvalidArgument(
            f"{what}: content digest {diff_id} does not match {expect} in the image "
            "config; the archive is corrupt or was altered"
        )
    check_layer(out_path)
    staging.layers.setdefault(diff_id, (out_path, size))
    return diff_id
