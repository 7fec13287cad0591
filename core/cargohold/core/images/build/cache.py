"""The build cache: which image a step made, keyed as the classic builder keys it.

A step's key is the digest of its parent image id, the instruction as it
runs (variables expanded, flags included), the run configuration it runs
with (environment, user, working directory, shell), the build arguments a
``RUN`` sees, and, for ``COPY``/``ADD``, the checksum of what is copied. A hit
is only a hit while its image is still in the store; a step that misses
gives a new image id, so every step after it misses too, as in docker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import NotFound
from cargohold.core.images.records import Image
from cargohold.core.images.store import ImageStore
from cargohold.core.state.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    key TEXT PRIMARY KEY,
    image TEXT NOT NULL
)
"""


def step_key(parent: str, step: str, run_config: Mapping[str, Any], extra: str = "") -> str:
    text = json.dumps([parent, step, run_config, extra], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class BuildCache:
    """``<state>/images/build-cache.db``."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # NORMAL: a cache entry lost to a power cut only costs a rebuild of that step
        self._db = Database(
            Path(store.root) / "build-cache.db", _SCHEMA, version=1, synchronous="NORMAL"
        )

    def close(self) -> None:
        self._db.close()

    def get(self, key: str) -> Image | None:
        row = self._db.connection().execute("SELECT image FROM steps WHERE key = ?", (key,))
        found = row.fetchone()
        if found is None:
            return None
        try:
            return self.store.get(str(found[0]))
        except NotFound:
            with self._db.transaction() as db:
                db.execute("DELETE FROM steps WHERE key = ?", (key,))
            return None

    def put(self, key: str, image: Image) -> None:
        with self._db.transaction() as db:
            db.execute("INSERT OR REPLACE INTO steps (key, image) VALUES (?, ?)", (key, image.id))

    def images(self) -> list[str]:
        """Every image id the cache names (what a clean-up removes)."""
        rows = self._db.connection().execute("SELECT DISTINCT image FROM steps")
        return [str(i) for (i,) in rows]
