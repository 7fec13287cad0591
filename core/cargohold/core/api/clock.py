"""The one way cargohold writes a time: RFC 3339 in UTC with a ``Z``, as Docker does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Precision = Literal["seconds", "milliseconds", "microseconds"]


def utc_now(precision: Precision = "seconds") -> str:
    """Now as ``2026-12-01T21:40:33Z``; finer ``precision`` where order within a second matters."""
    return datetime.now(UTC).isoformat(timespec=precision).replace("+00:00", "Z")
