"""Which registry blob holds which layer: the distribution metadata docker keeps too.

The image store keeps layers uncompressed, by diff id; registries hold them
compressed, by the digest of the compressed bytes. This index remembers, per
diff id, the blob (digest, size, media type) it came from or was pushed as,
and in which repositories of which registry it is known to be. A push then
asks the registry about that blob (``HEAD``) or mounts it from a repository
that has it, instead of compressing and uploading the layer again.

Losing it costs only speed: an unknown layer is compressed and uploaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cargohold.core.state.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    diff_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    PRIMARY KEY (diff_id, digest)
);
CREATE TABLE IF NOT EXISTS locations (
    digest TEXT NOT NULL,
    registry TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repository)
)
"""


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


class BlobIndex:
    """``<state>/images/distribution.db``."""

    def __init__(self, images_root: Path) -> None:
        images_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # NORMAL: an entry lost to a power cut only costs an upload (see the docstring)
        self._db = Database(
            images_root / "distribution.db", _SCHEMA, version=1, synchronous="NORMAL"
        )

    def close(self) -> None:
        self._db.close()

    def record(self, diff_id: str, blob: Blob, registry: str, repository: str) -> None:
        self.record_all([(diff_id, blob)], registry, repository)

    def record_all(
        self, layers: Iterable[tuple[str, Blob]], registry: str, repository: str
    ) -> None:
        """Each (diff id, blob) is in ``repository`` of ``registry``: one transaction."""
        with self._db.transaction() as db:
            for diff_id, blob in layers:
                db.execute(
                    "INSERT OR REPLACE INTO blobs (diff_id, digest, size, media_type)"
                    " VALUES (?, ?, ?, ?)",
                    (diff_id, blob.digest, blob.size, blob.media_type),
                )
                db.execute(
                    "INSERT OR IGNORE INTO locations (digest, registry, repository)"
                    " VALUES (?, ?, ?)",
                    (blob.digest, registry, repository),
                )

    def forget(self, digest: str, registry: str, repository: str) -> None:
        """The blob is not (or no longer) in that repository."""
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM locations WHERE digest = ? AND registry = ? AND repository = ?",
                (digest, registry, repository),
            )

    def blobs(self, diff_id: str) -> list[Blob]:
        rows = self._db.connection().execute(
            "SELECT digest, size, media_type FROM blobs WHERE diff_id = ? ORDER BY rowid DESC",
            (diff_id,),
        )
        return [Blob(d, s, m) for d, s, m in rows]

    def repositories(self, digest: str, registry: str) -> list[str]:
        rows = self._db.connection().execute(
            "SELECT repository FROM locations WHERE digest = ? AND registry = ?",
            (digest, registry),
        )
        return [r for (r,) in rows]
