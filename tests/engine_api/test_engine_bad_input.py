"""Bad input to the Engine API: Docker's status codes and bodies, nothing left behind."""

from __future__ import annotations

import json
import socket

import pytest

from cargohold.core import Runtime

from ..containers.conftest import IMAGE
from .conftest import Daemon

pytestmark = pytest.mark.root


def message(body: bytes) -> str:
    data = json.loads(body)
    assert set(data) == {"message"}
    return str(data["message"])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"[1, 2]", 400, "not an object"),
        (b"{not json", 400, "not valid JSON"),
        (b'{"Image": 5}', 400, "Image is required"),
        (b'{"Image": "' + IMAGE.encode() + b'", "Cmd": "true"}', 400, "Cmd must be an array"),
        (
            b'{"Image": "' + IMAGE.encode() + b'", "Cmd": ["true"], "HostConfig": []}',
            400,
            "HostConfig must be",
        ),
        (b'{"Image": "nosuch:1"}', 404, "no such image"),
        (
            b'{"Image": "'
            + IMAGE.encode()
            + b'", "Cmd": ["true"], "HostConfig": {"Binds": ["relative:x"]}}',
            400,
            "",
        ),
        (
            b'{"Image": "'
            + IMAGE.encode()
            + b'", "Cmd": ["true"], "HostConfig": {"NetworkMode": "weave"}}',
            404,
            "network weave not found",
        ),
    ],
)
def test_bad_create_bodies_leave_nothing(
    daemon: Daemon, rt: Runtime, body: bytes, status: int, words: str
) -> None:
    before = {v.name for v in rt.volumes.list()}
    code, headers, answer = daemon.request("POST", "/v1.45/containers/create", body)
    assert code == status and headers["Content-Type"] == "application/json"
    assert words.lower() in message(answer).lower()
    assert rt.containers.list(all=True) == []
    assert {v.name for v in rt.volumes.list()} == before


def test_failed_create_with_a_mount_leaves_no_anonymous_volume(daemon: Daemon, rt: Runtime) -> None:
    """The anonymous volume is made first; the mount after it fails: both are undone."""
    broken = {"Type": "volume", "Source": "vol", "Target": "/v"}
    broken["VolumeOptions"] = {"DriverConfig": {"Name": "nosuchdriver"}}
    body = {"Image": IMAGE, "Cmd": ["true"], "Volumes": {"/anon": {}}}
    body["HostConfig"] = {"Mounts": [broken]}
    code, _, answer = daemon.request("POST", "/v1.45/containers/create", json.dumps(body).encode())
    assert code in (400, 404) and "nosuchdriver" in message(answer)
    assert rt.containers.list(all=True) == [] and rt.volumes.list() == []


def test_conflicting_names(daemon: Daemon, rt: Runtime) -> None:
    first = daemon.docker("create", "--name", "taken", IMAGE, "true")
    assert first.returncode == 0
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"]}).encode()
    code, _, answer = daemon.request("POST", "/v1.45/containers/create?name=taken", body)
    assert code == 409 and '"/taken" is already in use' in message(answer)
    again = daemon.docker("create", "--name", "taken", IMAGE, "true")
    assert again.returncode == 1 and "already in use" in again.stderr
    assert len(rt.containers.list(all=True)) == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1.45/containers/ghost/json", 404),
        ("POST", "/v1.45/containers/ghost/start", 404),
        ("POST", "/v1.45/containers/ghost/stop", 404),
        ("POST", "/v1.45/containers/ghost/wait", 404),
        ("DELETE", "/v1.45/containers/ghost", 404),
        ("GET", "/v1.45/containers/ghost/logs?stdout=1", 404),
        ("POST", "/v1.45/containers/ghost/exec", 404),
        ("GET", "/v1.45/exec/ghost/json", 404),
        ("GET", "/v1.45/images/ghost:1/json", 404),
        ("DELETE", "/v1.45/images/ghost:1", 404),
        ("GET", "/v1.10/containers/json", 400),
        ("GET", "/v1.99/containers/json", 400),
        ("GET", "/v1.45/nowhere", 404),
        ("POST", "/v1.45/containers/ghost/kill?signal=NOPE", 400),
    ],
)
def test_missing_things_and_versions(daemon: Daemon, method: str, path: str, status: int) -> None:
    code, headers, body = daemon.request(method, path, b"{}" if method == "POST" else None)
    assert code == status, body
    assert headers["Api-Version"] == "1.45" and message(body)


def test_bad_signal_and_old_api_messages(daemon: Daemon) -> None:
    assert daemon.docker("create", "--name", "sig", IMAGE, "sleep", "5").returncode == 0
    code, _, body = daemon.request("POST", "/v1.45/containers/sig/kill?signal=NOPE", b"")
    assert code == 400 and "Invalid signal: NOPE" in message(body)
    code, _, body = daemon.request("GET", "/v1.10/version")
    assert code == 400 and "Minimum supported API version is 1.24" in message(body)


def test_hijack_request_on_a_plain_route(daemon: Daemon) -> None:
    """``Upgrade: tcp`` where no stream is served gets an ordinary answer."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(daemon.socket))
        sock.sendall(
            b"POST /v1.45/containers/ghost/start HTTP/1.1\r\nHost: x\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and b"No such container: ghost" in body
