"""Docker's JSON shapes of cargohold's objects: what the Engine API answers.

The docker CLI prints these shapes (``docker image inspect`` prints the
Engine API's answer), so both frontends that speak Docker's JSON, the
Engine-API daemon and cargohold's own CLI, build them here, and the core's
objects stay free of wire formats.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cargohold.core.images.records import Image


def image_inspect(image: Image) -> dict[str, Any]:
    """``docker image inspect``'s shape, for the fields cargohold has."""
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": [],
        "Parent": "",
        "Comment": image.config.get("comment", ""),
        "Created": image.config.get("created", image.created),
        "Author": image.config.get("author", ""),
        "Config": dict(image.run_config),
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Metadata": {"LastTagTime": image.created},
    }


def image_summary(image: Image) -> dict[str, Any]:
    """One item of the Engine API's ``GET /images/json``."""
    created = image.config.get("created", image.created)
    try:
        stamp = int(datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp())
    except ValueError:
        stamp = 0
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": list(image.repo_tags) or ["<none>:<none>"],
        "RepoDigests": [],
        "Created": stamp,
        "Size": image.size,
        "SharedSize": -1,
        "VirtualSize": image.size,
        "Labels": image.labels,
        "Containers": len(image.holders),
    }
