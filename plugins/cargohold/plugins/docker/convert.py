"""Volumes in the Docker volume-plugin protocol's shapes (Get and List answers).

The core's `Volume` knows nothing of Docker; each frontend that speaks a
Docker shape builds it beside itself, from the volume's plain fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cargohold.core.volumes.service import Volume


def volume_answer(volume: Volume) -> dict[str, Any]:
    """A volume as Get describes it. ``CreatedAt`` is left out rather than sent empty:
    the engine cannot decode an empty one and then forgets the volume."""
    answer: dict[str, Any] = {
        "Name": volume.name,
        "Mountpoint": volume.mountpoint,
        "Status": json_safe(volume.status),
    }
    if volume.created_at:
        answer["CreatedAt"] = volume.created_at
    return answer


def list_entry(volume: Volume) -> dict[str, str]:
    """A volume as List describes it: the engine reads only these two fields."""
    return {"Name": volume.name, "Mountpoint": volume.mountpoint}


def json_safe(status: Mapping[str, Any]) -> dict[str, Any]:
    """A driver's status as JSON can carry it (odd values become text)."""
    if not status:
        return {}
    return json.loads(json.dumps(dict(status), default=str))  # type: ignore[no-any-return]
