"""An Engine-API daemon: the real docker CLI's ``docker volume ...`` against cargohold.

``cargohold daemon -H unix:///PATH`` serves, on a unix socket, the subset of
Docker's Engine API the docker CLI needs for ``docker volume
create|ls|inspect|rm|prune`` (with ``/_ping`` and ``/version``), plus
read-only ``GET /containers/json``, ``/containers/{id}/json``, ``/images/json``
and ``/images/{name}/json`` (``docker ps``, ``docker images``, ``docker inspect``). Every path may
carry a ``/v1.NN`` prefix; every answer carries ``Api-Version``; errors are
``{"message": ...}`` with the status of the error's kind.

Flask and waitress are imported only when the daemon starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from cargohold.core import CargoholdError, Conflict, InvalidArgument, hookimpl
from cargohold.core.volumes.filters import LIST_FILTERS, PRUNE_FILTERS, Filters, filters_from_api

if TYPE_CHECKING:
    from flask import Flask, Response

    from cargohold.core.runtime import Runtime

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
#: From this version on, prune removes only anonymous volumes unless ``all=true``.
PRUNE_ALL_SINCE = (1, 42)
MAX_BODY = 1 << 20
CONTAINER_FILTERS = frozenset({"id", "name", "status", "label"})

_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


class _VersionPrefix:
    """WSGI middleware: strip ``/v1.NN`` and remember it, refusing versions we lack."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        match = _VERSION_PREFIX.match(path)
        if match:
            environ["PATH_INFO"] = match.group(3)
            environ["cargohold.api_version"] = (int(match.group(1)), int(match.group(2)))
        return self.app(environ, start_response)


def _filters(raw: str | None, allowed: frozenset[str]) -> Filters:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid filters {raw[:200]!r}: not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument("invalid filters: expected a JSON object")
    return filters_from_api(parsed, allowed)


def create_app(rt: Runtime) -> Flask:
    """The Flask app serving ``rt``; wrap it with nothing else (versions are handled)."""
    from importlib.metadata import version as dist_version

    from flask import Flask, Response, request
    from werkzeug.exceptions import HTTPException

    app = Flask("cargohold.engine_api")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    server_version = dist_version("cargohold")

    def answer(data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data) + "\n", status, content_type="application/json")

    def api_version() -> tuple[int, int]:
        given = request.environ.get("cargohold.api_version")
        return given if given else _parse_version(API_VERSION)

    @app.before_request
    def check_version() -> Response | None:
        given = request.environ.get("cargohold.api_version")
        if given and given > _parse_version(API_VERSION):
            return answer(
                {
                    "message": f"client version {given[0]}.{given[1]} is too new. "
                    f"Maximum supported API version is {API_VERSION}"
                },
                400,
            )
        if given and given < _parse_version(MIN_API_VERSION):
            return answer(
                {
                    "message": f"client version {given[0]}.{given[1]} is too old. "
                    f"Minimum supported API version is {MIN_API_VERSION}, "
                    "please upgrade your client to a newer version"
                },
                400,
            )
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Api-Version"] = API_VERSION
        response.headers["Docker-Experimental"] = "false"
        response.headers["Ostype"] = "linux"
        response.headers["Server"] = f"cargohold/{server_version} ({platform.system()})"
        return response

    @app.errorhandler(CargoholdError)
    def cargohold_error(err: CargoholdError) -> Response:
        return answer({"message": str(err)}, err.http_status)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        message = "page not found" if err.code == 404 else (err.description or str(err))
        return answer({"message": message}, err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        app.logger.exception("unexpected error")
        return answer({"message": f"internal error: {type(err).__name__}: {err}"}, 500)

    # -- system ------------------------------------------------------------------

    @app.route("/_ping", methods=["GET", "HEAD"])
    def ping() -> Response:
        response = Response("OK", 200, content_type="text/plain; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
        response.headers["Pragma"] = "no-cache"
        return response

    @app.route("/version", methods=["GET"])
    def version() -> Response:
        uname = os.uname()
        return answer(
            {
                "Platform": {"Name": "cargohold"},
                "Components": [
                    {"Name": "cargohold", "Version": server_version, "Details": {}},
                ],
                "Version": server_version,
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "",
                "GoVersion": f"python{platform.python_version()}",
                "Os": "linux",
                "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
                "KernelVersion": uname.release,
                "BuildTime": "",
            }
        )

    # -- volumes -----------------------------------------------------------------

    @app.route("/volumes", methods=["GET"])
    def volume_list() -> Response:
        filters = _filters(request.args.get("filters"), LIST_FILTERS)
        volumes = rt.volumes.list(filters)
        return answer({"Volumes": [v.to_docker() for v in volumes], "Warnings": None})

    @app.route("/volumes/create", methods=["POST"])
    def volume_create() -> Response:
        body = _json_body(request.get_data(cache=False))
        name = body.get("Name") or None
        driver = body.get("Driver") or "local"
        if not isinstance(driver, str) or (name is not None and not isinstance(name, str)):
            raise InvalidArgument("Name and Driver must be strings")
        opts = _string_map(body.get("DriverOpts"), "DriverOpts")
        labels = _string_map(body.get("Labels"), "Labels")
        created = rt.volumes.create(name, driver, opts, labels)
        return answer(created.to_docker(), 201)

    @app.route("/volumes/<name>", methods=["GET"])
    def volume_inspect(name: str) -> Response:
        return answer(rt.volumes.get(name).to_docker())

    @app.route("/volumes/<name>", methods=["DELETE"])
    def volume_remove(name: str) -> Response:
        force = request.args.get("force", "").lower() in ("1", "true")
        if force and not _exists(rt, name):
            return Response(status=204)
        rt.volumes.remove(name, force=force)
        return Response(status=204)

    @app.route("/volumes/prune", methods=["POST"])
    def volume_prune() -> Response:
        filters = _filters(request.args.get("filters"), PRUNE_FILTERS)
        if api_version() < PRUNE_ALL_SINCE:
            filters["all"] = {"true"}  # older clients pruned named volumes too
        report = rt.volumes.prune(filters)
        return answer({"VolumesDeleted": report.removed, "SpaceReclaimed": report.space_reclaimed})

    # -- read-only containers and images ---------------------------------------------

    @app.route("/containers/json", methods=["GET"])
    def container_list() -> Response:
        show_all = request.args.get("all", "").lower() in ("1", "true")
        filters = _filters(request.args.get("filters"), CONTAINER_FILTERS)
        service = rt.containers
        listed = [
            service.summary(c)
            for c in service.list(all=show_all or "status" in filters)
            if _container_matches(service.summary(c), filters)
        ]
        limit = request.args.get("limit", "")
        if limit.lstrip("-").isdigit() and int(limit) > 0:
            listed = listed[: int(limit)]
        return answer(listed)

    @app.route("/containers/<ref>/json", methods=["GET"])
    def container_inspect(ref: str) -> Response:
        service = rt.containers
        return answer(service.inspect(service.get(ref)))

    @app.route("/images/json", methods=["GET"])
    def image_list() -> Response:
        return answer([image.to_summary() for image in rt.images.list()])

    @app.route("/images/<path:ref>/json", methods=["GET"])
    def image_inspect(ref: str) -> Response:
        return answer(rt.images.get(ref).to_inspect())

    app.wsgi_app = _VersionPrefix(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _exists(rt: Runtime, name: str) -> bool:
    try:
        rt.volumes.get(name)
    except CargoholdError:
        return False
    return True


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidArgument("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"{what} must be an object of strings")
    return dict(value)


def _container_matches(summary: Mapping[str, Any], filters: Filters) -> bool:
    if "id" in filters and not any(summary["Id"].startswith(i) for i in filters["id"]):
        return False
    names = [n.lstrip("/") for n in summary["Names"]]
    if "name" in filters and not any(f in n for f in filters["name"] for n in names):
        return False
    if "status" in filters and summary["State"] not in filters["status"]:
        return False
    labels: Mapping[str, str] = summary["Labels"]
    for expr in filters.get("label", ()):
        key, sep, value = expr.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


# -- the daemon command ----------------------------------------------------------------


def socket_path(host: str) -> Path:
    """``unix:///run/cargohold.sock`` -> the path; other schemes are refused."""
    parts = urlsplit(host)
    if parts.scheme != "unix" or not parts.path:
        raise InvalidArgument(f"-H {host!r}: give unix:///absolute/path.sock")
    path = Path(parts.path)
    if len(os.fsencode(path)) > 107:
        raise InvalidArgument(f"-H {host!r}: unix socket paths are limited to 107 bytes")
    return path


def _claim(path: Path) -> None:
    """Remove a dead daemon's socket; refuse if a live one answers there."""
    import socket  # (imported by the daemon only: every command loads this plugin)

    if not path.exists() and not path.is_symlink():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise Conflict(f"a server is already listening on {path}: stop it, or pick another -H")


@click.command("daemon")
@click.option(
    "-H", "--host", "host", default="unix:///run/cargohold.sock", show_default=True,
    help="where to listen: unix:///PATH",
)  # fmt: skip
@click.option("--threads", default=8, show_default=True, help="worker threads")
def daemon_command(host: str, threads: int) -> None:
    """Serve the Docker Engine API's volume routes for the docker CLI (DOCKER_HOST=...)."""
    import signal

    from waitress.server import create_server

    from cargohold.core.cli import runtime

    path = socket_path(host)
    _claim(path)
    app = create_app(runtime())
    server = create_server(
        app, unix_socket=str(path), unix_socket_perms="660", threads=threads, ident="cargohold"
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"cargohold daemon listening on unix://{path}", err=True)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    group.add_command(daemon_command)
