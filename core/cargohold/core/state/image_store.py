"""The image tables in ``images/images.db``: configs, layers, tags and holders."""

from __future__ import annotations

from pathlib import Path

from cargohold.core.state.database import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    config BLOB NOT NULL,
    created TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    diff_id TEXT NOT NULL REFERENCES layers(diff_id),
    PRIMARY KEY (image, position)
);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    ref TEXT PRIMARY KEY,
    image TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS holders (
    image TEXT NOT NULL REFERENCES images(id),
    holder TEXT NOT NULL,
    PRIMARY KEY (image, holder)
);
"""
_SCHEMA_VERSION = 1


class ImageDatabase(Database):
    """``images.db``: every change one transaction, so a failed load leaves no record."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, version=_SCHEMA_VERSION)
