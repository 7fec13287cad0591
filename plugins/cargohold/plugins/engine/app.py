"""The Flask app of the Engine API: version prefixes, headers, errors, system routes.

Every path may carry a ``/v1.NN`` prefix; a version above ours or under the
minimum is a 400. Every answer carries ``Api-Version``; errors are
``{"message": ...}`` with the status of the error's kind.
"""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING

from flask import Flask, Response, request

from cargohold.plugins.engine import containers, execs, images, images_remote, volumes
from cargohold.plugins.engine.wire import (
    API_VERSION,
    MAX_BODY,
    MIN_API_VERSION,
    VersionPrefix,
    answer,
    parse_version,
)
from cargohold.plugins.http.flask_errors import install_error_handlers

if TYPE_CHECKING:
    from cargohold.core.runtime import Runtime


def create_app(rt: Runtime) -> Flask:
    """The Flask app serving ``rt``; wrap it with nothing else (versions are handled)."""
    from importlib.metadata import version as dist_version

    app = Flask("cargohold.engine")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    server_version = dist_version("cargohold")
    install_error_handlers(app, lambda message, status: answer({"message": message}, status))

    @app.before_request
    def check_version() -> Response | None:
        given = request.environ.get("cargohold.api_version")
        if given and given > parse_version(API_VERSION):
            message = (
                f"client version {given[0]}.{given[1]} is too new. "
                f"Maximum supported API version is {API_VERSION}"
            )
            return answer({"message": message}, 400)
        if given and given < parse_version(MIN_API_VERSION):
            message = (
                f"client version {given[0]}.{given[1]} is too old. "
                f"Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version"
            )
            return answer({"message": message}, 400)
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Api-Version"] = API_VERSION
        response.headers["Docker-Experimental"] = "false"
        response.headers["Ostype"] = "linux"
        response.headers["Server"] = f"cargohold/{server_version} ({platform.system()})"
        return response

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
                "Components": [{"Name": "cargohold", "Version": server_version, "Details": {}}],
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

    volumes.register(app, rt)
    containers.register(app, rt)
    execs.register(app, rt)
    images.register(app, rt)
    images_remote.register(app, rt)  # after images: it extends /images/create
    app.wsgi_app = VersionPrefix(app.wsgi_app)  # type: ignore[method-assign]
    return app
