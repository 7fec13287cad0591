"""What serves one volume driver as a Docker volume plugin, behind the HTTP server.

A thin translation: every method parses its body (`protocol`), calls the
runtime's `VolumeService` (which owns names, metadata, references and locks,
all kept in the SQLite store) and answers (`convert`). Errors become
``{"Err": "..."}`` with the error's HTTP status; the engine reports any
non-empty ``Err`` or non-200 answer as the call's failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from cargohold.core.api.errors import CargoholdError, NotFound
from cargohold.core.volumes.service import Volume, VolumeService
from cargohold.plugins.docker import convert, protocol
from cargohold.plugins.docker.health import STATUS_PATH, Health
from cargohold.plugins.docker.protocol import Body
from cargohold.plugins.http.calls import Answer, Call
from cargohold.plugins.http.errors import status_for

log = logging.getLogger(__name__)

Handler = Callable[[Body], dict[str, Any]]
#: where the status document is read (the short one is for people typing it)
STATUS_PATHS = (STATUS_PATH, "/status")


class VolumePlugin:
    """The protocol's eight methods for one driver, on top of the volume service."""

    def __init__(self, volumes: VolumeService, driver: str) -> None:
        self.volumes = volumes
        self.driver = driver
        # Built now, so a driver that cannot start fails the server's start, not a request.
        self.scope = volumes.drivers.get(driver).scope

    def handlers(self) -> dict[str, Handler]:
        return {
            protocol.ACTIVATE: self.activate,
            protocol.CREATE: self.create,
            protocol.REMOVE: self.remove,
            protocol.MOUNT: self.mount,
            protocol.UNMOUNT: self.unmount,
            protocol.PATH: self.path,
            protocol.GET: self.get,
            protocol.LIST: self.list,
            protocol.CAPABILITIES: self.capabilities,
        }

    def activate(self, body: Body) -> dict[str, Any]:
        return {"Implements": list(protocol.IMPLEMENTS)}

    def create(self, body: Body) -> dict[str, Any]:
        name = protocol.volume_name(body)
        self.volumes.create(name, self.driver, protocol.volume_options(body))
        return {"Err": ""}

    def remove(self, body: Body) -> dict[str, Any]:
        name = self._owned_name(body)
        self.volumes.remove(name)
        return {"Err": ""}

    def mount(self, body: Body) -> dict[str, Any]:
        name = self._owned_name(body)
        path = self.volumes.mount(name, protocol.mount_id(body))
        return {"Mountpoint": str(path), "Err": ""}

    def unmount(self, body: Body) -> dict[str, Any]:
        name = self._owned_name(body)
        self.volumes.unmount(name, protocol.mount_id(body))
        return {"Err": ""}

    def path(self, body: Body) -> dict[str, Any]:
        return {"Mountpoint": self._owned(body).mountpoint, "Err": ""}

    def get(self, body: Body) -> dict[str, Any]:
        return {"Volume": convert.volume_answer(self._owned(body)), "Err": ""}

    def list(self, body: Body) -> dict[str, Any]:
        served = self.volumes.list({"driver": {self.driver}})
        return {"Volumes": [convert.list_entry(v) for v in served], "Err": ""}

    def capabilities(self, body: Body) -> dict[str, Any]:
        return {"Capabilities": {"Scope": self.scope}}

    # A volume of another driver is, to this plugin, no volume at all: the
    # engine must not mount or remove it through the wrong driver.
    def _owned(self, body: Body) -> Volume:
        volume = self.volumes.get(protocol.volume_name(body))
        if volume.driver != self.driver:
            raise self._foreign(volume.name, volume.driver)
        return volume

    def _owned_name(self, body: Body) -> str:
        name = protocol.volume_name(body)
        record = self.volumes.store.get(name)
        if record is not None and record.driver != self.driver:
            raise self._foreign(name, record.driver)
        return name

    def _foreign(self, name: str, driver: str) -> NotFound:
        return NotFound(
            f"no such volume: {name} (cargohold has a volume of that name on driver "
            f"{driver!r}, which this plugin, serving {self.driver!r}, does not handle)"
        )


class PluginApp:
    """Routes each call to its method and answers in the protocol's shape.

    Errors answer ``{"Err": ...}`` with the error's status (`errors.status_for`);
    ``health`` counts the calls and keeps the failures, where ``GET
    /cargohold/status`` shows them.
    """

    def __init__(self, volumes: VolumeService, driver: str, health: Health) -> None:
        self.volumes = volumes
        self.health = health
        self.methods = VolumePlugin(volumes, driver).handlers()

    def add(self, method: str, handler: Handler) -> None:
        """Answer ``POST /<method>`` with ``handler`` too (the bench's no-op floor)."""
        self.methods[method] = handler

    def __call__(self, call: Call) -> Answer:
        method = call.path[1:]
        handler = self.methods.get(method)
        if handler is not None:
            if call.method != "POST":
                message = f"{call.method} {call.path} is not allowed: the protocol uses POST"
                return self._failed(method, None, message, 405)
            return self._call(method, handler, call.body)
        if call.path in STATUS_PATHS:
            if call.method not in ("GET", "HEAD"):
                message = f"{call.method} {call.path} is not allowed: the status is read with GET"
                return self._failed(method, None, message, 405)
            report = json.dumps(self.health.report(self.volumes), indent=2) + "\n"
            return Answer(200, report.encode(), "application/json")
        message = f"unknown endpoint {call.path}: this plugin answers POST " + ", ".join(
            f"/{m}" for m in protocol.METHODS
        )
        return self._failed(method or "-", None, message, 404)

    def refuse(self, status: int, problem: str, path: str) -> Answer:
        """The answer to a request the HTTP server refused before any method saw it."""
        if status == 413:
            message = protocol.too_large_message()
        elif status == 500:
            message = problem
        else:
            message = f"{HTTPStatus(status).phrase}: {problem}"
        return self._failed(path.lstrip("/") or "-", None, message, status)

    def _call(self, method: str, handler: Handler, raw: bytes) -> Answer:
        self.health.count(method)
        body: Body | None = None
        try:
            body = protocol.parse_body(raw)
            return answer(handler(body), 200)
        except CargoholdError as err:
            # a 404 from a method is a volume not found: routine, the engine asks first
            status = status_for(err)
            return self._failed(method, body, str(err), status, missing=status == 404)
        except Exception as err:
            log.exception("%s: unexpected error", method)
            message = (
                f"{method} failed inside the plugin ({type(err).__name__}: {err}); "
                "the plugin's log has the details"
            )
            return self._failed(method, body, message, 500)

    def _failed(
        self, method: str, body: Body | None, message: str, status: int, *, missing: bool = False
    ) -> Answer:
        name = (body or {}).get("Name")
        volume = name[:255] if isinstance(name, str) else None
        if missing:
            log.info("%s %s: %s", method, volume or "-", message)
        else:
            log.warning("%s %s: %s", method, volume or "-", message)
        self.health.failed(method, volume, message, status, missing=missing)
        return answer(protocol.error_answer(message), status)


def answer(data: dict[str, Any], status: int) -> Answer:
    # The engine's decoder, like Go's encoder, is happy with a trailing newline.
    return Answer(status, (json.dumps(data) + "\n").encode(), protocol.CONTENT_TYPE)
