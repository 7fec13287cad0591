"""The Flask app that serves one volume driver as a Docker volume plugin.

A thin translation: every endpoint parses its body (`protocol`), calls the
runtime's `VolumeService` (which owns names, metadata, references and locks,
all kept in the SQLite store) and answers (`convert`). Errors become
``{"Err": "..."}`` with the error's HTTP status, through the HTTP kit's
handlers; the engine reports any non-empty ``Err`` or non-200 answer as the
call's failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from cargohold.core.api.errors import NotFound
from cargohold.core.volumes.service import Volume, VolumeService
from cargohold.plugins.docker import convert, protocol
from cargohold.plugins.docker.health import STATUS_PATH, Health
from cargohold.plugins.docker.protocol import Body
from cargohold.plugins.http.flask_errors import install_error_handlers

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

    def describe_http(err: HTTPException) -> str:
        # Routing and size errors, answered in the protocol's shape, never as HTML.
        if err.code == 404:
            return f"unknown endpoint {request.path}: this plugin answers POST " + ", ".join(
                f"/{m}" for m in protocol.METHODS
            )
        if err.code == 405:
            return f"{request.method} {request.path} is not allowed: the protocol uses POST"
        if err.code == 413:
            return protocol.too_large_message()
        return f"{request.path}: {err.description or err.name}"

    def describe_unexpected(err: BaseException) -> str:
        return (
            f"{_method()} failed inside the plugin ({type(err).__name__}: {err}); "
            "the plugin's log has the details"
        )

    def observe(message: str, status: int) -> None:
        body = g.get("body") or {}
        name = body.get("Name")
        volume = name[:255] if isinstance(name, str) else None
        # a 404 from a protocol endpoint is a volume not found; from routing, a bad path
        missing = status == 404 and request.url_rule is not None
        if missing:
            log.info("%s %s: %s", _method(), volume or "-", message)
        else:
            log.warning("%s %s: %s", _method(), volume or "-", message)
        health.failed(_method(), volume, message, status, missing=missing)

    install_error_handlers(
        app,
        lambda message, status: answer(protocol.error_answer(message), status),
        describe_http=describe_http,
        describe_unexpected=describe_unexpected,
        observe=observe,
    )
    return app


def _method() -> str:
    return request.path.lstrip("/") or "-"


def _endpoint(method: str, handler: Handler, health: Health) -> Callable[[], Response]:
    def view() -> Response:
        health.count(method)
        # parsed first and kept for the error handlers, which name the volume
        g.body = protocol.parse_body(request.get_data(cache=False))
        return answer(handler(g.body), 200)

    view.__name__ = method
    return view


def answer(data: dict[str, Any], status: int) -> Response:
    # The engine's decoder, like Go's encoder, is happy with a trailing newline.
    return Response(json.dumps(data) + "\n", status=status, content_type=protocol.CONTENT_TYPE)
