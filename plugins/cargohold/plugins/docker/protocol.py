"""The server side of the Docker volume-plugin protocol, without HTTP.

Turns request bodies into checked arguments and volumes into answers. The
engine sends every call as ``POST /<Method>`` with a JSON object (an empty
body for ``Plugin.Activate``) and reads ``{"Err": "..."}`` on failure; see
``docs/docker-plugin.md`` for the guarantees built on this.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cargohold.core.api.errors import InvalidArgument
from cargohold.core.volumes.names import validate_volume_name
from cargohold.core.volumes.service import Volume

#: What the engine's plugin client accepts; go-plugins-helpers answers the same.
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
#: Larger bodies are refused unread: a real request is a few hundred bytes.
MAX_BODY = 1024 * 1024
IMPLEMENTS = ("VolumeDriver",)

ACTIVATE = "Plugin.Activate"
CREATE = "VolumeDriver.Create"
REMOVE = "VolumeDriver.Remove"
MOUNT = "VolumeDriver.Mount"
UNMOUNT = "VolumeDriver.Unmount"
PATH = "VolumeDriver.Path"
GET = "VolumeDriver.Get"
LIST = "VolumeDriver.List"
CAPABILITIES = "VolumeDriver.Capabilities"
METHODS = (ACTIVATE, CREATE, REMOVE, MOUNT, UNMOUNT, PATH, GET, LIST, CAPABILITIES)

Body = dict[str, Any]


def parse_body(raw: bytes) -> Body:
    """The request's JSON object; an empty body is ``{}`` (Activate sends none)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument("request body is not UTF-8 text: send a JSON object") from None
    except ValueError as err:
        raise InvalidArgument(
            f"request body is not valid JSON ({err}): send a JSON object"
        ) from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"request body is a JSON {_json_kind(data)}, not an object: "
            'send {"Name": "..."} as the protocol says'
        )
    return data


def volume_name(body: Body) -> str:
    """The ``Name`` field, a valid volume name (so it can never leave the driver's area)."""
    if "Name" not in body:
        raise InvalidArgument('request has no "Name": say which volume')
    name = body["Name"]
    if not isinstance(name, str):
        raise InvalidArgument(f'"Name" must be a string, not a JSON {_json_kind(name)}')
    return validate_volume_name(name)


def volume_options(body: Body) -> dict[str, str]:
    """The ``Opts`` field: an object of strings; missing or null means none."""
    opts = body.get("Opts")
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise InvalidArgument(
            f'"Opts" must be an object of strings (or null), not a JSON {_json_kind(opts)}'
        )
    for key, value in opts.items():
        if not isinstance(value, str):
            raise InvalidArgument(
                f"option {key!r} must be a string, not a JSON {_json_kind(value)}: "
                "the engine passes -o key=value as text"
            )
    return opts


def mount_id(body: Body) -> str:
    """The ``ID`` of a Mount or Unmount: one per container mountpoint."""
    value = body.get("ID")
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            '"ID" must be a non-empty string: the engine sends one per container mountpoint'
        )
    return value


def volume_answer(volume: Volume) -> dict[str, Any]:
    """A volume as Get describes it. ``CreatedAt`` is left out rather than sent empty:
    the engine cannot decode an empty one and then forgets the volume."""
    answer: dict[str, Any] = {
        "Name": volume.name,
        "Mountpoint": volume.mountpoint,
        "Status": _json_safe(volume.status),
    }
    if volume.created_at:
        answer["CreatedAt"] = volume.created_at
    return answer


def list_entry(volume: Volume) -> dict[str, str]:
    """A volume as List describes it: the engine reads only these two fields."""
    return {"Name": volume.name, "Mountpoint": volume.mountpoint}


def too_large_message() -> str:
    return (
        f"request body is larger than {MAX_BODY} bytes: "
        "a volume-plugin request is a small JSON object"
    )


def error_answer(message: str) -> dict[str, str]:
    return {"Err": message or "unknown error"}


def _json_kind(value: object) -> str:
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


def _json_safe(status: Mapping[str, Any]) -> dict[str, Any]:
    """A driver's status as JSON can carry it (odd values become text)."""
    if not status:
        return {}
    return json.loads(json.dumps(dict(status), default=str))  # type: ignore[no-any-return]
