"""The HTTP kit both frontends share: bodies, statuses, socket claiming, Flask handlers."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from flask import Flask, Response

from cargohold.core import Conflict, InUse, InvalidArgument, NotFound
from cargohold.plugins.http.accept import Acceptor
from cargohold.plugins.http.bodies import json_kind, parse_json_object, string_map
from cargohold.plugins.http.errors import status_for, unexpected_message
from cargohold.plugins.http.flask_errors import install_error_handlers
from cargohold.plugins.http.sockets import claim_unix_socket, is_live_unix


@pytest.mark.parametrize("raw", [b"", b"  \n", b"{}"])
def test_an_empty_body_is_an_empty_object(raw: bytes) -> None:
    assert parse_json_object(raw) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", r"^request body is not valid JSON \(.*\): say so$"),
        (b"\xff\xfe{}", "^request body is not UTF-8 text: say so$"),
        (b"[1]", "^request body is a JSON array, not an object: say so$"),
        (b"null", "^request body is a JSON null, not an object: say so$"),
    ],
)
def test_bad_bodies_say_what_came(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_json_object(raw, hint="say so")


def test_string_maps() -> None:
    assert string_map(None, "Labels") == {}
    assert string_map({"a": "1"}, "Labels") == {"a": "1"}
    with pytest.raises(InvalidArgument, match=r"^Labels must be an object of strings"):
        string_map(["a"], "Labels")
    with pytest.raises(InvalidArgument, match=r"^Labels: 'a' must be a string, not a JSON number"):
        string_map({"a": 1}, "Labels")
    assert [json_kind(v) for v in (True, 1.5, "", {}, [])] == [
        "boolean", "number", "string", "object", "array"
    ]  # fmt: skip


def test_status_comes_from_the_error() -> None:
    assert [status_for(e) for e in (NotFound(), InUse(), Conflict(), InvalidArgument())] == [
        404, 409, 409, 400
    ]  # fmt: skip
    assert status_for(KeyError("x")) == 500
    assert unexpected_message(KeyError("x")) == "internal error: KeyError: 'x'"


def test_claiming_a_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.sock"
    claim_unix_socket(path)  # nothing there: nothing to do
    assert not path.parent.exists()
    claim_unix_socket(path, make_parent=True)
    assert path.parent.is_dir()

    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # a crashed server's leftover: nobody listens
    assert path.exists() and not is_live_unix(path)
    claim_unix_socket(path)
    assert not path.exists()

    live = socket.socket(socket.AF_UNIX)
    live.bind(str(path))
    live.listen(1)
    try:
        with pytest.raises(Conflict, match=f"another program is listening on {path}: go away"):
            claim_unix_socket(path, remedy="go away")
    finally:
        live.close()
    path.unlink()
    path.write_text("a file")
    with pytest.raises(Conflict, match="exists and is not a socket"):
        claim_unix_socket(path)
    assert path.read_text() == "a file"


def test_flask_handlers_answer_in_the_frontends_shape() -> None:
    app = Flask("kit-test")
    seen: list[tuple[str, int]] = []

    def render(message: str, status: int) -> Response:
        return Response(json.dumps({"m": message}), status, content_type="application/json")

    install_error_handlers(app, render, observe=lambda m, s: seen.append((m, s)))

    @app.route("/known")
    def known() -> str:
        raise InUse("volume v is in use")

    @app.route("/bug")
    def bug() -> str:
        raise KeyError("oops")

    client = app.test_client()
    answers = [client.get(path) for path in ("/known", "/bug", "/nowhere")]
    assert [(a.status_code, a.get_json()) for a in answers] == [
        (409, {"m": "volume v is in use"}),
        (500, {"m": "internal error: KeyError: 'oops'"}),
        (404, {"m": "page not found"}),
    ]
    assert seen == [("volume v is in use", 409), ("internal error: KeyError: 'oops'", 500),
                    ("page not found", 404)]  # fmt: skip


def test_connections_over_the_limit_are_closed_at_once(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s.sock"))
    listener.listen(8)
    release = threading.Event()
    served: list[socket.socket] = []

    def serve(sock: socket.socket) -> None:
        served.append(sock)
        release.wait(10)
        sock.close()

    acceptor = Acceptor(listener, serve, "test-conn", limit=2)
    running = threading.Thread(target=acceptor.run, daemon=True)
    running.start()
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for client in clients:
            client.settimeout(10)
            client.connect(str(tmp_path / "s.sock"))
        assert clients[2].recv(1) == b""  # the third was closed, not left waiting
        release.set()
        for client in clients[:2]:
            assert client.recv(1) == b""  # the two served ones end when their server does
        assert len(served) == 2
    finally:
        release.set()
        for client in clients:
            client.close()
        acceptor.stop()
        running.join(5)
    assert not running.is_alive()
