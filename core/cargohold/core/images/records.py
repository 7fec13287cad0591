"""An image as the store knows it: id, tags, config, size and who holds it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cargohold.core.images.config import chain_ids

#: Label on a committed layer snapshot: the diff id it holds.
LAYER_LABEL = "cargohold.layer.diff-id"


@dataclass(frozen=True)
class Image:
    """One image: its id, tags and config (what ``docker image inspect`` shows)."""

    id: str
    repo_tags: tuple[str, ...]
    config: Mapping[str, Any]
    created: str
    size: int
    holders: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.config.get("rootfs", {}).get("diff_ids") or ())

    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def run_config(self) -> Mapping[str, Any]:
        """The ``config`` section: how a container of this image runs."""
        return self.config.get("config") or {}

    @property
    def env(self) -> list[str]:
        return list(self.run_config.get("Env") or [])

    @property
    def cmd(self) -> list[str]:
        return list(self.run_config.get("Cmd") or [])

    @property
    def entrypoint(self) -> list[str]:
        return list(self.run_config.get("Entrypoint") or [])

    @property
    def working_dir(self) -> str:
        return str(self.run_config.get("WorkingDir") or "")

    @property
    def user(self) -> str:
        return str(self.run_config.get("User") or "")

    @property
    def volumes(self) -> list[str]:
        """The image's ``VOLUME`` paths, sorted."""
        return sorted(self.run_config.get("Volumes") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.run_config.get("Labels") or {})
