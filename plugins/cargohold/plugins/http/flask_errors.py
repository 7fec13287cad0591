"""Flask error handlers for a frontend, answering in that frontend's shape.

Each frontend renders an error its own way (``{"Err": ...}`` for the plugin
protocol, ``{"message": ...}`` for the Engine API) but they agree on what
status each error gets (`errors.status_for`) and that a bug answers 500
without a traceback. Flask is imported here only, and only by a server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from cargohold.core.api.errors import CargoholdError
from cargohold.plugins.http.errors import status_for, unexpected_message

#: (message, status) -> the response in the frontend's shape
Render = Callable[[str, int], Response]
#: (message, status) -> None: counts or logs a failure (health reports, say)
Observe = Callable[[str, int], None]

log = logging.getLogger(__name__)


def http_message(err: HTTPException) -> str:
    """Werkzeug's own text for routing and size errors, without its HTML."""
    if err.code == 404:
        return "page not found"
    return err.description or err.name


def install_error_handlers(
    app: Flask,
    render: Render,
    *,
    describe_http: Callable[[HTTPException], str] = http_message,
    describe_unexpected: Callable[[BaseException], str] = unexpected_message,
    observe: Observe | None = None,
) -> None:
    """Answer every error ``app`` meets through ``render``.

    Our errors keep their message and status; werkzeug's (unknown route, wrong
    method, body too large) are described by ``describe_http``; anything else
    is logged with its traceback and described by ``describe_unexpected``.
    ``observe`` hears each (message, status) before it is answered.
    """

    def answer(message: str, status: int) -> Response:
        if observe is not None:
            observe(message, status)
        return render(message, status)

    @app.errorhandler(CargoholdError)
    def known(err: CargoholdError) -> Response:
        return answer(str(err), status_for(err))

    @app.errorhandler(HTTPException)
    def http(err: HTTPException) -> Response:
        return answer(describe_http(err), err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("%s: unexpected error", app.name)
        return answer(describe_unexpected(err), 500)
