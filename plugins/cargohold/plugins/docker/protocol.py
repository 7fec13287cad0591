"""The server side of the Docker volume-plugin protocol, without HTTP.

Turns request bodies into checked arguments (`convert` turns volumes into answers). The
engine sends every call as ``POST /<Method>`` with a JSON object (an empty
body for ``Plugin.Activate``) and reads ``{"Err": "..."}`` on failure; see
``docs/docker-plugin.md`` for the guarantees built on this.
"""

from __future__ import annotations

from typing import Any

from cargohold.core.api.errors import InvalidArgument
from cargohold.core.volumes.names import validate_volume_name
from cargohold.plugins.http.bodies import json_kind, parse_json_object, string_map

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
    return parse_json_object(raw, hint='send {"Name": "..."} as the protocol says')


def volume_name(body: Body) -> str:
    """The ``Name`` field, a valid volume name (so it can never leave the driver's area)."""
    if "Name" not in body:
        raise InvalidArgument('request has no "Name": say which volume')
    name = body["Name"]
    if not isinstance(name, str):
        raise InvalidArgument(f'"Name" must be a string, not a JSON {json_kind(name)}')
    return validate_volume_name(name)


def volume_options(body: Body) -> dict[str, str]:
    """The ``Opts`` field: an object of strings (the engine passes -o key=value as
    text); missing or null means none."""
    return string_map(body.get("Opts"), '"Opts"')


def mount_id(body: Body) -> str:
    """The ``ID`` of a Mount or Unmount: one per container mountpoint."""
    value = body.get("ID")
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            '"ID" must be a non-empty string: the engine sends one per container mountpoint'
        )
    return value


def too_large_message() -> str:
    return (
        f"request body is larger than {MAX_BODY} bytes: "
        "a volume-plugin request is a small JSON object"
    )


def error_answer(message: str) -> dict[str, str]:
    return {"Err": message or "unknown error"}
