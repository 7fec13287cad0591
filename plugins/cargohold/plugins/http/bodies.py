"""Request bodies: a JSON object, or a clear error saying what came instead."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cargohold.core.api.errors import InvalidArgument

JsonObject = dict[str, Any]


def parse_json_object(raw: bytes, *, hint: str = "send a JSON object") -> JsonObject:
    """The body as a JSON object; an empty (or blank) body is ``{}``.

    Both protocols send bodiless requests (Plugin.Activate, a create with no
    fields), so emptiness is not an error. ``hint`` ends each message: what the
    client should have sent.
    """
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument(f"request body is not UTF-8 text: {hint}") from None
    except ValueError as err:
        raise InvalidArgument(f"request body is not valid JSON ({err}): {hint}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"request body is a JSON {json_kind(data)}, not an object: {hint}")
    return data


def string_map(value: object, what: str) -> dict[str, str]:
    """A field that must be an object of strings (labels, options); null means empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f"{what} must be an object of strings (or null), not a JSON {json_kind(value)}"
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidArgument(f"{what}: {key!r} must be a string, not a JSON {json_kind(item)}")
    return dict(value)


def json_kind(value: object) -> str:
    """JSON's name for the type of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
