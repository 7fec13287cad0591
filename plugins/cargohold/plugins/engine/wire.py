"""What every Engine-API route shares: versions, JSON answers, query flags and filters."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flask import Response, request

from cargohold.core.api.errors import InvalidArgument
from cargohold.core.volumes.filters import Filters, filters_from_api

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
MAX_BODY = 1 << 20

_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


class VersionPrefix:
    """WSGI middleware: strip ``/v1.NN`` and remember it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        match = _VERSION_PREFIX.match(environ.get("PATH_INFO", ""))
        if match:
            environ["PATH_INFO"] = match.group(3)
            environ["cargohold.api_version"] = (int(match.group(1)), int(match.group(2)))
        return self.app(environ, start_response)


def answer(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data) + "\n", status, content_type="application/json")


def api_version() -> tuple[int, int]:
    given: tuple[int, int] | None = request.environ.get("cargohold.api_version")
    return given if given else parse_version(API_VERSION)


def flag(name: str, default: bool = False) -> bool:
    """A boolean query parameter as Docker reads them (``1``, ``true``, ``True``)."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("1", "true", "yes")


def filters(allowed: frozenset[str]) -> Filters:
    raw = request.args.get("filters")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filters {raw[:200]!r}: not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    return filters_from_api(parsed, allowed)
