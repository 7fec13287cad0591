"""Events the core emits through `cargohold_volume_event`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

VolumeAction = Literal["create", "remove", "mount", "unmount", "prune"]


@dataclass(frozen=True)
class VolumeEvent:
    action: VolumeAction
    volume: str
    driver: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
