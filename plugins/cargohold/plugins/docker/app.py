"""The Flask app that serves one volume driver as a Docker volume plugin.

A thin translation: every endpoint parses its body (`protocol`), calls the
runtime's `VolumeService` (which owns names, metadata, references and locks,
all kept in the SQLite store) and answers. Errors become ``{"Err": "..."}``
with the error's HTTP status; the engine reports any non-empty ``Err`` or
non-200 answer as the call's failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from cargohold.core.api.errors import CargoholdError, NotFound
from cargohold.core.volumes.service import Volume, VolumeService
from cargohold.plugins.docker import protocol
from cargohold.plugins.docker.health import STATUS_PATH, Health
from cargohold.plugins.docker.protocol import Body

log = logging.getLogger(__name__)

Handler = Callable[[Body], dict[str, Any]]


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
        return {"Volume": protocol.volume_answer(self._owned(body)), "Err": ""}

    def list(self, body: Body) -> dict[str, Any]:
        served = self.volumes.list({"driver": {self.driver}})
        return {"Volumes": [protocol.list_entry(v) for v in served], "Err": ""}

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


def create_app(volumes: VolumeService, driver: str, health: Health) -> Flask:
    """The WSGI app serving ``driver``; ``health`` counts requests and keeps errors."""
    app = Flask(f"cargohold-plugin-{health.plugin}")
    app.config["MAX_CONTENT_LENGTH"] = protocol.MAX_BODY
    plugin = VolumePlugin(volumes, driver)

    for method, handler in plugin.handlers().items():
        app.add_url_rule(
            f"/{method}",
            endpoint=method,
            view_func=_endpoint(method, handler, health),
            methods=["POST"],
        )

    def status() -> Response:
        return Response(
            json.dumps(health.report(volumes), indent=2) + "\n",
            content_type="application/json",
        )

    app.add_url_rule(STATUS_PATH, endpoint="status", view_func=status, methods=["GET"])
    app.add_url_rule("/status", endpoint="status-short", view_func=status, methods=["GET"])

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        # Routing and size errors, answered in the protocol's shape, never as HTML.
        code = err.code or 500
        if code == 404:
            message = f"unknown endpoint {request.path}: this plugin answers POST " + ", ".join(
                f"/{m}" for m in protocol.METHODS
            )
        elif code == 405:
            message = f"{request.method} {request.path} is not allowed: the protocol uses POST"
        elif code == 413:
            message = protocol.too_large_message()
        else:
            message = f"{request.path}: {err.description or err.name}"
        health.failed(request.path.lstrip("/"), None, message, code)
        return answer(protocol.error_answer(message), code)

    return app


def _endpoint(method: str, handler: Handler, health: Health) -> Callable[[], Response]:
    def view() -> Response:
        health.count(method)
        body: Body = {}
        try:
            body = protocol.parse_body(request.get_data(cache=False))
            result = handler(body)
        except CargoholdError as err:
            return _failure(health, method, body, str(err), err.http_status)
        except HTTPException:
            raise  # the app's error handler answers these
        except Exception as err:
            log.exception("%s failed unexpectedly", method)
            message = (
                f"{method} failed inside the plugin ({type(err).__name__}: {err}); "
                "the plugin's log has the details"
            )
            return _failure(health, method, body, message, 500)
        return answer(result, 200)

    view.__name__ = method
    return view


def _failure(health: Health, method: str, body: Body, message: str, status: int) -> Response:
    name = body.get("Name")
    volume = name[:255] if isinstance(name, str) else None
    log.warning("%s %s: %s", method, volume or "-", message)
    health.failed(method, volume, message, status)
    return answer(protocol.error_answer(message), status)


def answer(data: dict[str, Any], status: int) -> Response:
    # The engine's decoder, like Go's encoder, is happy with a trailing newline.
    return Response(json.dumps(data) + "\n", status=status, content_type=protocol.CONTENT_TYPE)
