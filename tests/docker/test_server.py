"""The plugin server over real sockets: protocol semantics, bad input, lifecycle, TLS."""

from __future__ import annotations

import contextlib
import grp
import http.client
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Conflict, DriverVolume, NotFound, Runtime, VolumeDriver, hookimpl
from cargohold.plugins.docker.health import UnixHTTPConnection
from cargohold.plugins.docker.listen import TlsFiles
from cargohold.plugins.docker.server import ListenOn, PluginServer

from .conftest import CARGOHOLD, PluginClient, Served, StartServe, serving, unique_name
from .tlsfiles import make_tls_files

ID_A = "a" * 64
ID_B = "b" * 64


# -- the protocol ------------------------------------------------------------------


def test_activate_takes_an_empty_body_without_content_type(served: Served) -> None:
    status, answer = served.client.raw("/Plugin.Activate", b"")
    assert (status, answer) == (200, {"Implements": ["VolumeDriver"]})


def test_capabilities_give_the_drivers_scope(served: Served) -> None:
    assert served.client.call("VolumeDriver.Capabilities", {}) == {
        "Capabilities": {"Scope": "local"}
    }


def test_get_before_create_then_create_is_idempotent(served: Served) -> None:
    client = served.client
    status, err = client.fails("VolumeDriver.Get", {"Name": "vol1"})
    assert status == 404 and "no such volume: vol1" in err
    client.call("VolumeDriver.Create", {"Name": "vol1", "Opts": None})
    # the engine creates again whenever a Get failed, for any reason
    client.call("VolumeDriver.Create", {"Name": "vol1", "Opts": {}})
    client.call("VolumeDriver.Create", {"Name": "vol1"})
    volume = client.call("VolumeDriver.Get", {"Name": "vol1"})["Volume"]
    assert volume["Name"] == "vol1"
    assert Path(volume["Mountpoint"]) == served.driver_root / "vol1" / "_data"
    assert Path(volume["Mountpoint"]).is_dir()
    created = datetime.fromisoformat(volume["CreatedAt"])
    assert created.tzinfo is not None, "the engine drops volumes whose CreatedAt has no zone"
    assert volume["Status"] == {}


def test_create_passes_options_and_reports_a_different_second_create(served: Served) -> None:
    client = served.client
    tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    client.call("VolumeDriver.Create", {"Name": "opts", "Opts": tmpfs})
    assert served.runtime.volumes.get("opts").options == tmpfs
    client.call("VolumeDriver.Create", {"Name": "opts", "Opts": tmpfs})
    _, err = client.fails(
        "VolumeDriver.Create", {"Name": "opts", "Opts": {**tmpfs, "o": "size=2m"}}
    )
    assert "option o is 'size=1m', asked 'size=2m'" in err
    _, err = client.fails("VolumeDriver.Create", {"Name": "other", "Opts": {"colour": "red"}})
    assert "invalid option 'colour'" in err
    _, err = client.fails("VolumeDriver.Get", {"Name": "other"})
    assert "no such volume" in err


def test_mounts_are_counted_per_id_with_repeats(served: Served) -> None:
    client, volumes = served.client, served.runtime.volumes
    client.call("VolumeDriver.Create", {"Name": "counted"})
    first = client.call("VolumeDriver.Mount", {"Name": "counted", "ID": ID_A})["Mountpoint"]
    # docker cp into a running container mounts again with the same id
    again = client.call("VolumeDriver.Mount", {"Name": "counted", "ID": ID_A})["Mountpoint"]
    client.call("VolumeDriver.Mount", {"Name": "counted", "ID": ID_B})
    assert first == again
    assert volumes.get("counted").refs == {ID_A: 2, ID_B: 1}
    path = client.call("VolumeDriver.Path", {"Name": "counted"})["Mountpoint"]
    assert path == first

    _, err = client.fails("VolumeDriver.Remove", {"Name": "counted"})
    assert "in use" in err and ID_A in err

    client.call("VolumeDriver.Unmount", {"Name": "counted", "ID": ID_A})
    client.call("VolumeDriver.Unmount", {"Name": "counted", "ID": ID_B})
    assert volumes.get("counted").refs == {ID_A: 1}, "the repeated id still holds one"
    client.call("VolumeDriver.Unmount", {"Name": "counted", "ID": ID_A})
    assert volumes.get("counted").refs == {}
    # an unmount after an engine crash or for an unknown id is no error
    client.call("VolumeDriver.Unmount", {"Name": "counted", "ID": ID_A})
    assert volumes.get("counted").refs == {}

    client.call("VolumeDriver.Remove", {"Name": "counted"})
    assert not (served.driver_root / "counted").exists()
    client.fails("VolumeDriver.Get", {"Name": "counted"})


def test_list_matches_the_store(served: Served) -> None:
    client = served.client
    assert client.call("VolumeDriver.List", {}) == {"Volumes": [], "Err": ""}
    for name in ("l1", "l2", "l3"):
        client.call("VolumeDriver.Create", {"Name": name})
    listed = client.call("VolumeDriver.List", {})["Volumes"]
    assert [v["Name"] for v in listed] == ["l1", "l2", "l3"]
    assert all(Path(v["Mountpoint"]).is_dir() for v in listed)
    client.call("VolumeDriver.Remove", {"Name": "l2"})
    listed = client.call("VolumeDriver.List", {})["Volumes"]
    assert [v["Name"] for v in listed] == [v.name for v in served.runtime.volumes.list()]


def test_volumes_of_other_drivers_are_not_this_plugins(served: Served, short_dir: Path) -> None:
    source = short_dir / "bound"
    served.runtime.volumes.create("foreign", "bind", {"source": str(source), "create": "true"})
    client = served.client
    _, err = client.fails("VolumeDriver.Get", {"Name": "foreign"})
    assert "'bind'" in err
    _, err = client.fails("VolumeDriver.Remove", {"Name": "foreign"})
    assert "no such volume" in err
    _, err = client.fails("VolumeDriver.Mount", {"Name": "foreign", "ID": ID_A})
    _, err = client.fails("VolumeDriver.Create", {"Name": "foreign"})
    assert "already has volume" in err
    assert client.call("VolumeDriver.List", {})["Volumes"] == []
    assert served.runtime.volumes.get("foreign").refs == {}


def test_parallel_mounts_and_unmounts_leave_no_reference(served: Served) -> None:
    served.client.call("VolumeDriver.Create", {"Name": "busy"})
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        client = PluginClient(served.client.socket_path)
        try:
            for round_ in range(10):
                mount_id = f"{index:02d}{round_:02d}".ljust(64, "0")
                client.call("VolumeDriver.Mount", {"Name": "busy", "ID": mount_id})
                client.call("VolumeDriver.Unmount", {"Name": "busy", "ID": mount_id})
        except BaseException as err:
            errors.append(err)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert served.runtime.volumes.get("busy").refs == {}
    served.client.call("VolumeDriver.Remove", {"Name": "busy"})


class _SharedDirs(VolumeDriver):
    """A third party's driver, as small as they come: a global-scope directory per volume."""

    name = "shareddirs"
    scope = "global"

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        (self.root / name).mkdir(exist_ok=True)

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        (self.root / name).rmdir()

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        return self.root / name

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        pass

    def get(self, name: str) -> DriverVolume:
        if not (self.root / name).is_dir():
            raise NotFound(f"no such volume: {name}")
        return DriverVolume(name, self.root / name, {"kind": "shared"})

    def list(self) -> list[DriverVolume]:
        return [DriverVolume(p.name, p) for p in self.root.iterdir()]


class _ThirdParty:
    @hookimpl
    def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
        return [_SharedDirs]


def test_any_driver_the_registry_builds_can_be_served(short_dir: Path) -> None:
    with (
        Runtime(short_dir / "state", plugins=[_ThirdParty()]) as runtime,
        serving(runtime, "shareddirs", short_dir / "p") as (_, client),
    ):
        capabilities = client.call("VolumeDriver.Capabilities", {})
        assert capabilities == {"Capabilities": {"Scope": "global"}}
        client.call("VolumeDriver.Create", {"Name": "team"})
        volume = client.call("VolumeDriver.Get", {"Name": "team"})["Volume"]
        assert volume["Status"] == {"kind": "shared"}
        path = client.call("VolumeDriver.Mount", {"Name": "team", "ID": ID_A})["Mountpoint"]
        assert Path(path) == runtime.state_dir / "drivers" / "shareddirs" / "team"
        client.call("VolumeDriver.Unmount", {"Name": "team", "ID": ID_A})
        client.call("VolumeDriver.Remove", {"Name": "team"})


# -- bad input -----------------------------------------------------------------------

BAD_REQUESTS = [
    ("/VolumeDriver.Create", b"{not json", 400, "not valid JSON"),
    ("/VolumeDriver.Create", b"\xff\xfe{}", 400, "not UTF-8"),
    ("/VolumeDriver.Create", b"[1, 2]", 400, "JSON array, not an object"),
    ("/VolumeDriver.Create", b'"vol"', 400, "JSON string, not an object"),
    ("/VolumeDriver.Create", b"{}", 400, 'no "Name"'),
    ("/VolumeDriver.Create", b'{"Name": 7}', 400, '"Name" must be a string, not a JSON number'),
    ("/VolumeDriver.Create", b'{"Name": null}', 400, "not a JSON null"),
    ("/VolumeDriver.Create", b'{"Name": ""}', 400, "volume name is empty"),
    ("/VolumeDriver.Create", b'{"Name": "v1", "Opts": []}', 400, '"Opts" must be an object'),
    ("/VolumeDriver.Create", b'{"Name": "v1", "Opts": "a=b"}', 400, '"Opts" must be an object'),
    ("/VolumeDriver.Create", b'{"Name": "v1", "Opts": {"o": 1}}', 400, "must be a string"),
    ("/VolumeDriver.Create", b'{"Name": "../../etc"}', 400, "invalid volume name"),
    ("/VolumeDriver.Create", b'{"Name": "/etc/passwd"}', 400, "invalid volume name"),
    ("/VolumeDriver.Create", b'{"Name": "a/../../b"}', 400, "invalid volume name"),
    ("/VolumeDriver.Create", b'{"Name": ".."}', 400, "invalid volume name"),
    ("/VolumeDriver.Remove", b'{"Name": "../state"}', 400, "invalid volume name"),
    ("/VolumeDriver.Mount", b'{"Name": "../x", "ID": "1"}', 400, "invalid volume name"),
    ("/VolumeDriver.Get", b'{"Name": "x\\u0000y"}', 400, "invalid volume name"),
    ("/VolumeDriver.Get", b'{"Name": "' + b"a" * 300 + b'"}', 400, "the limit is 255"),
    ("/VolumeDriver.Nope", b"{}", 404, "unknown endpoint /VolumeDriver.Nope"),
    ("/", b"{}", 404, "unknown endpoint"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_err_and_change_nothing(
    served: Served, short_dir: Path, path: str, body: bytes, status: int, message: str
) -> None:
    before = _tree(short_dir)
    got, answer = served.client.raw(path, body)
    assert got == status
    assert message in answer["Err"]
    assert _tree(short_dir) == before, "a bad request changed files"
    assert served.runtime.volumes.list() == []
    # and the server is still there
    assert served.client.call("Plugin.Activate")["Implements"] == ["VolumeDriver"]


def test_mount_needs_an_id(served: Served) -> None:
    served.client.call("VolumeDriver.Create", {"Name": "needsid"})
    for body in ({"Name": "needsid"}, {"Name": "needsid", "ID": ""}, {"Name": "needsid", "ID": 5}):
        status, err = served.client.fails("VolumeDriver.Mount", body)
        assert status == 400 and '"ID"' in err
    assert served.runtime.volumes.get("needsid").refs == {}


def test_wrong_method_is_refused(served: Served) -> None:
    status, answer = served.client.raw("/VolumeDriver.Get", method="GET")
    assert status == 405 and "uses POST" in answer["Err"]
    served.client.call("Plugin.Activate")


def _send_early_answered(
    socket_path: Path, body: bytes, chunked: bool
) -> tuple[int, str, dict[str, Any]]:
    """POST ``body``; the server may answer and close before reading all of it, so a
    broken pipe while sending is no failure: the answer is read anyway, as Go's client
    (the engine's) does. Returns the status, Content-Type and decoded answer."""
    conn = UnixHTTPConnection(str(socket_path), 30)
    try:
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(
                "POST", "/VolumeDriver.Create", body=chunks if chunked else body,
                encode_chunked=chunked,
            )  # fmt: skip
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("size", "chunked"),
    # just over the limit; several times over it; streamed without a length
    [(1024 * 1024 + 1, False), (5_000_000, False), (3_000_000, True)],
)
def test_every_oversized_body_gets_a_json_err(
    served: Served, short_dir: Path, size: int, chunked: bool
) -> None:
    assert served.server.socket_path is not None
    before = _tree(short_dir)
    body = b'{"Name": "big", "Opts": {"o": "' + b"x" * size + b'"}}'
    status, content_type, answer = _send_early_answered(served.server.socket_path, body, chunked)
    assert status == 413
    assert content_type == "application/vnd.docker.plugins.v1+json"
    assert answer == {
        "Err": "request body is larger than 1048576 bytes: "
        "a volume-plugin request is a small JSON object"
    }
    assert _tree(short_dir) == before and served.runtime.volumes.list() == []
    assert served.client.status()["last_errors"][-1]["status"] == 413
    served.client.call("Plugin.Activate")


def test_broken_http_gets_a_json_err(served: Served) -> None:
    assert served.server.socket_path is not None
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        raw.connect(str(served.server.socket_path))
        raw.sendall(b"POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        head, _, data = raw.makefile("rb").read().partition(b"\r\n\r\n")
    finally:
        raw.close()
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(data)["Err"].startswith("Bad Request: ")
    served.client.call("Plugin.Activate")


def _raw_exchange(socket_path: Path, data: bytes, *, wait_for: int = 1) -> list[bytes]:
    """Send ``data`` as it is and read until ``wait_for`` answers (head + body) came."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(10)
    try:
        raw.connect(str(socket_path))
        raw.sendall(data)
        received = b""
        answers: list[bytes] = []
        while len(answers) < wait_for:
            chunk = raw.recv(65536)
            if not chunk:
                break
            received += chunk
            while b"\r\n\r\n" in received:
                head, _, rest = received.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                if len(rest) < length:
                    break
                answers.append(head + b"\r\n\r\n" + rest[:length])
                received = rest[length:]
        return answers
    finally:
        raw.close()


def test_pipelined_calls_are_answered_in_order(served: Served) -> None:
    assert served.server.socket_path is not None
    served.client.call("VolumeDriver.Create", {"Name": "piped"})
    calls = b""
    for method, body in (("VolumeDriver.Get", b'{"Name": "piped"}'), ("Plugin.Activate", b"")):
        calls += f"POST /{method} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        calls += body
    first, second = _raw_exchange(served.server.socket_path, calls, wait_for=2)
    assert first.startswith(b"HTTP/1.1 200 ") and b'"Name": "piped"' in first
    assert second.startswith(b"HTTP/1.1 200 ") and b'"Implements"' in second


def test_expect_continue_is_answered_before_the_body(served: Served) -> None:
    assert served.server.socket_path is not None
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(10)
    try:
        raw.connect(str(served.server.socket_path))
        body = b'{"Name": "continued"}'
        raw.sendall(
            b"POST /VolumeDriver.Create HTTP/1.1\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert raw.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body
        raw.sendall(body)
        assert raw.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        raw.close()
    assert served.runtime.volumes.get("continued").name == "continued"


@pytest.mark.parametrize("end", [b"\r\n\r\n", b""], ids=["complete", "never-ending"])
def test_an_oversized_head_gets_a_json_err(served: Served, end: bytes) -> None:
    assert served.server.socket_path is not None
    filler = b"x" * (70_000 if end else 300_000)
    request = b"POST /VolumeDriver.Get HTTP/1.1\r\nX-Filler: " + filler + end
    (answer,) = _raw_exchange(served.server.socket_path, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert "larger than 65536 bytes" in json.loads(body)["Err"]
    served.client.call("Plugin.Activate")


def test_stop_lets_a_call_in_progress_finish(short_dir: Path) -> None:
    armed, entered, release = threading.Event(), threading.Event(), threading.Event()

    class SlowGet(_SharedDirs):
        name = "slowget"

        def get(self, name: str) -> DriverVolume:
            if armed.is_set():  # after the create, which asks too
                entered.set()
                release.wait(10)
            return DriverVolume(name, self.root / name, {"slow": True})

    class Provides:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
            return [SlowGet]

    got: list[Any] = []
    with Runtime(short_dir / "state", plugins=[Provides()]) as runtime:
        server = PluginServer(runtime.volumes, "slowget", unique_name(), ListenOn(short_dir / "p"))
        server.start()
        assert server.socket_path is not None
        client = PluginClient(server.socket_path)
        try:
            client.call("VolumeDriver.Create", {"Name": "slow"})
            armed.set()
            caller = threading.Thread(
                target=lambda: got.append(client.call("VolumeDriver.Get", {"Name": "slow"}))
            )
            caller.start()
            assert entered.wait(10)
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            stopper.join(0.5)
            assert stopper.is_alive(), "stop did not wait for the call being answered"
            assert not server.socket_path.exists(), "the socket outlived the start of stop"
            release.set()
            caller.join(10)
            stopper.join(10)
            assert not stopper.is_alive()
        finally:
            release.set()
            server.stop()
            client.close()
    assert got and got[0]["Volume"]["Status"] == {"slow": True}


def _tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its size (lock files and the database excepted)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for entry in dirs + files:
            path = Path(directory, entry)
            if path.parent.name == "locks" or path.name.startswith("state.db"):
                continue
            found[str(path.relative_to(root))] = 0 if path.is_dir() else path.stat().st_size
    return found


# -- status --------------------------------------------------------------------------


def test_status_shows_volumes_mounts_and_last_errors(served: Served) -> None:
    client = served.client
    client.call("VolumeDriver.Create", {"Name": "seen"})
    client.call("VolumeDriver.Mount", {"Name": "seen", "ID": ID_A})
    client.fails("VolumeDriver.Get", {"Name": "missing"})  # as the engine asks before Create
    client.fails("VolumeDriver.Create", {"Name": "../bad"})
    report = client.status()
    assert report["plugin"] == served.server.name
    assert report["driver"] == "local"
    assert report["pid"] == os.getpid()
    assert report["address"] == f"unix://{served.server.socket_path}"
    assert [v["name"] for v in report["volumes"]] == ["seen"]
    assert report["active_mounts"] == [
        {"volume": "seen", "id": ID_A, "count": 1, "mountpoint": report["volumes"][0]["mountpoint"]}
    ]
    # "no such volume" is routine, counted apart; the invalid name is an error
    assert report["no_such_volume"] == {"VolumeDriver.Get": 1}
    assert report["error_count"] == 1
    assert [e["volume"] for e in report["last_errors"]] == ["../bad"]
    assert "invalid volume name" in report["last_errors"][-1]["error"]
    assert report["requests"]["VolumeDriver.Mount"] == 1

    cli = subprocess.run(
        [CARGOHOLD, "plugin", "status", str(served.server.socket_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert "seen" in cli.stdout and ID_A in cli.stdout
    assert "errors: 1; no such volume: 1 (the engine asks Get before each Create" in cli.stdout
    assert "no such volume: missing" not in cli.stdout
    # by name, found where the engine would look
    as_json = subprocess.run(
        [CARGOHOLD, "plugin", "status", served.server.name, "--format", "json"],
        env={**os.environ, "CARGOHOLD_PLUGIN_SOCKET_DIR": str(served.socket_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(as_json.stdout)["active_mounts"][0]["id"] == ID_A
    client.call("VolumeDriver.Unmount", {"Name": "seen", "ID": ID_A})


def test_status_escapes_and_cuts_untrusted_names(served: Served) -> None:
    # any client of the plugin chooses the names that reach the status table
    hostile = "evil\x00\x1b[2J" + "x" * 300
    served.client.fails("VolumeDriver.Create", {"Name": hostile})
    served.client.fails("VolumeDriver.Mount", {"Name": "ok-name", "ID": "\x07" * 10})
    cli = subprocess.run(
        [CARGOHOLD, "plugin", "status", str(served.server.socket_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert "\x00" not in cli.stdout and "\x1b" not in cli.stdout and "\x07" not in cli.stdout
    assert "evil\\x00\\x1b[2Jxxx" in cli.stdout  # shown escaped
    widest = max(len(line) for line in cli.stdout.splitlines())
    assert widest < 420, f"a {widest}-character line"  # not padded to the 300-character name
    assert "   evil\\x00\\x1b[2J" + "x" * 46 + "...   " in cli.stdout  # cut to 64 characters


def test_status_of_a_plugin_that_is_not_running_says_so(short_dir: Path) -> None:
    result = subprocess.run(
        [CARGOHOLD, "plugin", "status", str(short_dir / "gone.sock")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "gone.sock" in result.stderr


# -- sockets and lifecycle -------------------------------------------------------------


def test_socket_is_group_docker_mode_0660(served: Served) -> None:
    assert served.server.socket_path is not None
    info = served.server.socket_path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    try:
        expected = grp.getgrnam("docker").gr_gid
    except KeyError:
        expected = os.getegid()  # no docker group on this host: the server's group stays
    assert info.st_gid == expected


def _stale_socket(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()  # the file stays, nothing listens: what a crash leaves


def test_a_stale_socket_is_replaced(short_dir: Path) -> None:
    name = unique_name()
    plugins = short_dir / "plugins"
    _stale_socket(plugins / f"{name}.sock")
    with Runtime(short_dir / "state") as runtime:
        server = PluginServer(runtime.volumes, "local", name, ListenOn(socket_dir=plugins))
        server.start()
        try:
            client = PluginClient(plugins / f"{name}.sock")
            assert client.call("Plugin.Activate")["Implements"] == ["VolumeDriver"]
            client.close()
        finally:
            server.stop()
    assert not (plugins / f"{name}.sock").exists()


def test_a_live_socket_is_not_stolen(short_dir: Path) -> None:
    name = unique_name()
    plugins = short_dir / "plugins"
    plugins.mkdir()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(plugins / f"{name}.sock"))
    other.listen(1)
    try:
        with Runtime(short_dir / "state") as runtime:
            server = PluginServer(runtime.volumes, "local", name, ListenOn(socket_dir=plugins))
            with pytest.raises(Conflict, match="another program is listening"):
                server.start()
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(plugins / f"{name}.sock"))  # still the other program's
        probe.close()
    finally:
        other.close()


def test_a_second_server_for_the_same_name_is_refused(
    served: Served, start_serve: StartServe, short_dir: Path
) -> None:
    result = subprocess.run(
        [
            CARGOHOLD,
            "serve",
            "local",
            "--name",
            served.server.name,
            "--socket-dir",
            str(served.socket_dir),
        ],
        env={**os.environ, "CARGOHOLD_STATE_DIR": str(short_dir / "other-state")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"already served by a running cargohold (pid {os.getpid()})" in result.stderr
    assert served.client.call("Plugin.Activate")


def test_a_regular_file_in_the_sockets_place_is_left_alone(short_dir: Path) -> None:
    name = unique_name()
    plugins = short_dir / "plugins"
    plugins.mkdir()
    (plugins / f"{name}.sock").write_text("not a socket")
    with Runtime(short_dir / "state") as runtime:
        server = PluginServer(runtime.volumes, "local", name, ListenOn(socket_dir=plugins))
        with pytest.raises(Conflict, match="is not a socket"):
            server.start()
    assert (plugins / f"{name}.sock").read_text() == "not a socket"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_server_and_remove_its_socket(
    start_serve: StartServe, signum: int
) -> None:
    proc = start_serve("local")
    assert proc.socket.exists()
    assert proc.signal(signum) == 0, proc.output()
    assert not proc.socket.exists()
    assert "stopped" in proc.output()
    assert proc.output().count("serving driver local as plugin") == 1, proc.output()


def test_state_survives_a_killed_server(start_serve: StartServe) -> None:
    proc = start_serve("local")
    client = PluginClient(proc.socket)
    client.call("VolumeDriver.Create", {"Name": "kept", "Opts": None})
    mountpoint = Path(client.call("VolumeDriver.Mount", {"Name": "kept", "ID": ID_A})["Mountpoint"])
    (mountpoint / "file").write_text("still here")
    client.close()
    proc.kill()
    assert proc.socket.exists(), "SIGKILL leaves the socket behind"

    again = start_serve("local", name=proc.name)  # replaces the stale socket
    assert "removing stale plugin socket" in again.output()
    client = PluginClient(again.socket)
    volume = client.call("VolumeDriver.Get", {"Name": "kept"})["Volume"]
    assert volume["Mountpoint"] == str(mountpoint)
    assert (Path(volume["Mountpoint"]) / "file").read_text() == "still here"
    assert again.signal(signal.SIGTERM) == 0
    with Runtime(proc.state_dir) as runtime:
        assert runtime.volumes.get("kept").refs == {ID_A: 1}
    client.close()


def test_several_drivers_each_get_a_plugin(short_dir: Path) -> None:
    plugins = short_dir / "plugins"
    process = subprocess.Popen(
        [CARGOHOLD, "serve", "local", "bind", "--socket-dir", str(plugins)],
        env={**os.environ, "CARGOHOLD_STATE_DIR": str(short_dir / "state")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert "as plugin cargohold-local at" in lines[0]
        assert "as plugin cargohold-bind at" in lines[1]
        local = PluginClient(plugins / "cargohold-local.sock")
        bind = PluginClient(plugins / "cargohold-bind.sock")
        status = local.status()
        assert {s["plugin"] for s in status["served"]} == {"cargohold-local", "cargohold-bind"}
        _, err = bind.fails("VolumeDriver.Create", {"Name": "nosource"})
        assert "needs option source" in err
        local.close()
        bind.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert not list(plugins.glob("*.sock"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["local", "--name", "local"], "Docker's built-in driver"),
        (["local", "bind", "--name", "x1"], "--name names one plugin"),
        (["nosuchdriver"], "no volume driver named 'nosuchdriver'"),
        (["local", "--name", "../evil"], "invalid driver name"),
        (["local", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"], "TLS needs --tcp"),
    ],
)
def test_serve_refuses_bad_arguments(short_dir: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [CARGOHOLD, "serve", *args, "--socket-dir", str(short_dir / "plugins")],
        env={**os.environ, "CARGOHOLD_STATE_DIR": str(short_dir / "state")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert (
        not list((short_dir / "plugins").glob("*.sock"))
        if (short_dir / "plugins").exists()
        else True
    )


# -- TCP and TLS -------------------------------------------------------------------------


def test_tcp_writes_a_spec_file_and_removes_it(short_dir: Path) -> None:
    specs = short_dir / "specs"
    name = unique_name()
    with Runtime(short_dir / "state") as runtime:
        where = ListenOn(socket_dir=short_dir / "plugins", spec_dir=specs, tcp=("127.0.0.1", 0))
        server = PluginServer(runtime.volumes, "local", name, where)
        server.start()
        try:
            url = (specs / f"{name}.spec").read_text().strip()
            assert url == server.url and url.startswith("tcp://127.0.0.1:")
            host, port = url.removeprefix("tcp://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("POST", "/Plugin.Activate", body=b"")
            assert json.loads(conn.getresponse().read()) == {"Implements": ["VolumeDriver"]}
            conn.close()
        finally:
            server.stop()
    assert not (specs / f"{name}.spec").exists()


def test_tls_requires_a_client_certificate_signed_by_the_ca(short_dir: Path) -> None:
    files = make_tls_files(short_dir / "tls")
    specs = short_dir / "specs"
    name = unique_name()
    tls = TlsFiles(
        files.server_cert, files.server_key, files.ca, files.client_cert, files.client_key
    )
    with Runtime(short_dir / "state") as runtime:
        where = ListenOn(
            socket_dir=short_dir / "plugins", spec_dir=specs, tcp=("127.0.0.1", 0), tls=tls
        )
        server = PluginServer(runtime.volumes, "local", name, where)
        server.start()
        try:
            spec = json.loads((specs / f"{name}.json").read_text())
            assert spec["Addr"] == server.url and server.url.startswith("https://127.0.0.1:")
            assert spec["TLSConfig"] == {
                "InsecureSkipVerify": False,
                "CAFile": str(files.ca),
                "CertFile": str(files.client_cert),
                "KeyFile": str(files.client_key),
            }
            port = int(server.url.rsplit(":", 1)[1])

            trusted = ssl.create_default_context(cafile=files.ca)
            trusted.load_cert_chain(files.client_cert, files.client_key)
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=trusted)
            for _ in range(3):  # keep-alive through the relay
                conn.request("POST", "/VolumeDriver.Create", body=b'{"Name": "secure"}')
                assert json.loads(conn.getresponse().read()) == {"Err": ""}
            conn.close()
            assert runtime.volumes.get("secure").driver == "local"

            anonymous = ssl.create_default_context(cafile=files.ca)
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=anonymous)
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                conn.request("POST", "/Plugin.Activate", body=b"")
                conn.getresponse().read()
            conn.close()

            # plugin status reaches it by name, with the TLS settings of its .json file
            status = subprocess.run(
                [CARGOHOLD, "plugin", "status", name, "--format", "json"],
                env={**os.environ, "CARGOHOLD_PLUGIN_SPEC_DIRS": str(specs),
                     "CARGOHOLD_PLUGIN_SOCKET_DIR": str(short_dir / "plugins")},
                capture_output=True,
                text=True,
                timeout=30,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["address"] == server.url

            untrusted = ssl.create_default_context()  # does not know our CA
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=untrusted)
            with pytest.raises(ssl.SSLCertVerificationError):
                conn.request("POST", "/Plugin.Activate", body=b"")
            conn.close()
        finally:
            server.stop()
    assert not (specs / f"{name}.json").exists()


def test_a_stale_spec_file_is_replaced_and_a_live_one_refused(short_dir: Path) -> None:
    specs = short_dir / "specs"
    specs.mkdir()
    name = unique_name()
    (specs / f"{name}.spec").write_text("tcp://127.0.0.1:1\n")  # nothing answers on port 1
    with Runtime(short_dir / "state") as runtime:
        where = ListenOn(socket_dir=short_dir / "plugins", spec_dir=specs, tcp=("127.0.0.1", 0))
        first = PluginServer(runtime.volumes, "local", name, where)
        first.start()
        try:
            assert (specs / f"{name}.spec").read_text().strip() == first.url
            # another program answering at the address in a spec file is not displaced
            second = PluginServer(
                runtime.volumes,
                "local",
                name,
                ListenOn(socket_dir=short_dir / "other", spec_dir=specs, tcp=("127.0.0.1", 0)),
            )
            with pytest.raises(Conflict, match="names a plugin that is answering"):
                second.start()
            assert (specs / f"{name}.spec").read_text().strip() == first.url
        finally:
            first.stop()
