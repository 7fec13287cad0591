"""The client side: any Docker volume plugin as a cargohold driver.

Against a small plugin written here (tests/docker/miniplugin.py) on real unix
sockets, TCP and TLS; rclone's plugin is in test_rclone.py, our own server in
test_check.py.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold.core import (
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Runtime,
    Unavailable,
)
from cargohold.core.api.volume_driver import DriverContext
from cargohold.plugins.docker import client as client_plugin
from cargohold.plugins.docker import finder
from cargohold.plugins.docker.client import PluginClient, connect, error_class
from cargohold.plugins.docker.discovery import (
    SOCKET_DIR_ENV,
    SPEC_DIRS_ENV,
    PluginAddress,
    TLSSettings,
    candidate_paths,
    find_plugin,
)

from .miniplugin import MiniPlugin

FAST = {"backoff": (0.05, 0.1), "timeout": 5.0}


@dataclass
class PluginDirs:
    sockets: Path
    etc: Path
    usr: Path

    @property
    def specs(self) -> tuple[Path, Path]:
        return (self.etc, self.usr)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginDirs]:
    """Private plugin directories, in the environment the client reads."""
    # Unix socket paths are limited to 107 bytes: keep the socket dir short.
    sockets = Path(f"/tmp/chs-{secrets.token_hex(3)}")
    sockets.mkdir()
    found = PluginDirs(sockets, tmp_path / "etc", tmp_path / "usr")
    found.etc.mkdir()
    found.usr.mkdir()
    monkeypatch.setenv(SOCKET_DIR_ENV, str(sockets))
    monkeypatch.setenv(SPEC_DIRS_ENV, f"{found.etc}:{found.usr}")
    monkeypatch.setenv(client_plugin.BACKOFF_ENV, "0.05,0.1")
    monkeypatch.setenv(client_plugin.TIMEOUT_ENV, "5")
    yield found
    for path in sorted(sockets.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    sockets.rmdir()


@pytest.fixture
def plugins() -> Iterator[list[MiniPlugin]]:
    """Plugins a test starts; all stopped at the end."""
    started: list[MiniPlugin] = []
    yield started
    for plugin in started:
        plugin.stop()


def unique(prefix: str = "mini") -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def serve(plugins: list[MiniPlugin], root: Path, socket_path: Path, **kwargs: object) -> MiniPlugin:
    plugin = MiniPlugin(root, **kwargs)  # type: ignore[arg-type]
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    plugin.serve_unix(socket_path)
    plugins.append(plugin)
    return plugin


def runtime_with_client(state: Path) -> Runtime:
    """A runtime whose plugins include the client, whether or not entry points are installed."""
    return Runtime(state, autoload=False, plugins=[finder], blocked=["docker-client"])


# -- discovery ----------------------------------------------------------------


def test_discovery_follows_the_engines_order(dirs: PluginDirs, plugins: list[MiniPlugin]) -> None:
    name = unique()
    paths = candidate_paths(name, dirs.sockets, dirs.specs)
    assert paths[:2] == [dirs.sockets / f"{name}.sock", dirs.sockets / name / f"{name}.sock"]
    assert paths[2:] == [
        dirs.etc / f"{name}.spec",
        dirs.etc / name / f"{name}.spec",
        dirs.etc / f"{name}.json",
        dirs.etc / name / f"{name}.json",
        dirs.usr / f"{name}.spec",
        dirs.usr / name / f"{name}.spec",
        dirs.usr / f"{name}.json",
        dirs.usr / name / f"{name}.json",
    ]
    assert find_plugin(name) is None

    # Lowest priority first, and each new file must win over the ones before.
    (dirs.usr / f"{name}.json").write_text(json.dumps({"Addr": "tcp://127.0.0.1:9"}))
    assert find_plugin(name) == PluginAddress(
        name, "tcp://127.0.0.1:9", source=dirs.usr / f"{name}.json"
    )
    (dirs.usr / f"{name}.spec").write_text("tcp://127.0.0.1:8\n")
    assert find_plugin(name).url == "tcp://127.0.0.1:8"  # type: ignore[union-attr]
    (dirs.etc / name).mkdir()
    (dirs.etc / name / f"{name}.spec").write_text("unix:///run/x.sock\n")
    assert find_plugin(name).url == "unix:///run/x.sock"  # type: ignore[union-attr]
    # A file that is not a socket is not a plugin, whatever its name.
    (dirs.sockets / f"{name}.sock").write_text("")
    assert find_plugin(name).url == "unix:///run/x.sock"  # type: ignore[union-attr]
    (dirs.sockets / f"{name}.sock").unlink()
    serve(plugins, dirs.sockets / "data2", dirs.sockets / name / f"{name}.sock")
    assert find_plugin(name).url == f"unix://{dirs.sockets}/{name}/{name}.sock"  # type: ignore[union-attr]
    serve(plugins, dirs.sockets / "data1", dirs.sockets / f"{name}.sock")
    assert find_plugin(name).url == f"unix://{dirs.sockets}/{name}.sock"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("127.0.0.1:8080", "has no scheme"),
        ("/run/docker/plugins/x.sock", "has no scheme"),
        ("ftp://h:1", "is not one of"),
    ],
)
def test_spec_without_a_usable_scheme_is_refused(
    dirs: PluginDirs, content: str, message: str
) -> None:
    name = unique()
    (dirs.etc / f"{name}.spec").write_text(content + "\n")
    with pytest.raises(InvalidArgument, match=message) as caught:
        find_plugin(name)
    assert str(dirs.etc / f"{name}.spec") in str(caught.value)
    # and through the registry: a clear error, not "no such driver"
    with runtime_with_client(dirs.etc.parent / "state") as rt, pytest.raises(InvalidArgument):
        rt.volumes.create("v1", driver=name)


def test_malformed_json_spec_is_refused(dirs: PluginDirs) -> None:
    name = unique()
    (dirs.etc / f"{name}.json").write_text('{"Addr": ')
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        find_plugin(name)
    (dirs.etc / f"{name}.json").write_text('{"TLSConfig": {}}')
    with pytest.raises(InvalidArgument, match="Addr"):
        find_plugin(name)


# -- the driver through the core ----------------------------------------------


def test_volume_lifecycle_through_a_plugin_on_a_unix_socket(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    plugin = serve(plugins, tmp_path / "data", dirs.sockets / f"{name}.sock")
    with runtime_with_client(tmp_path / "state") as rt:
        # Any option passes through: the remote plugin is the one to judge it.
        created = rt.volumes.create("v1", driver=name, opts={"remote": "x:/y", "n": "3"})
        assert created.driver == name
        assert created.options == {"remote": "x:/y", "n": "3"}
        assert created.status == {"opts": {"remote": "x:/y", "n": "3"}}
        path = rt.volumes.mount("v1", "c1")
        assert path == tmp_path / "data" / "v1"
        (path / "f").write_text("held by the plugin")
        rt.volumes.mount("v1", "c2")
        rt.volumes.unmount("v1", "c1")
        # The core counts users; the plugin hears one Mount, under one id of ours.
        held = rt.drivers.get(name).plugin_mount_id("v1")  # type: ignore[attr-defined]
        assert plugin.volumes["v1"].refs == {held: 1}
        with pytest.raises(InUse):
            rt.volumes.remove("v1")
        rt.volumes.unmount("v1", "c2")
        assert plugin.volumes["v1"].refs == {}
        assert [v.name for v in rt.volumes.list()] == ["v1"]
        rt.volumes.remove("v1")
    assert plugin.volumes == {}
    assert not (tmp_path / "data" / "v1").exists()
    methods = [r.method for r in plugin.requests]
    assert methods[:2] == ["Plugin.Activate", "VolumeDriver.Capabilities"]
    assert methods.count("Plugin.Activate") == 1
    assert "VolumeDriver.Remove" in methods


def test_requests_look_like_the_engines(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    plugin = serve(plugins, tmp_path / "data", dirs.sockets / f"{name}.sock")
    with runtime_with_client(tmp_path / "state") as rt:
        rt.volumes.create("v1", driver=name)
    activate, capabilities, create = plugin.requests[:3]
    assert activate.body == b""
    assert activate.headers["Content-Length"] == "0"
    for request in (activate, capabilities, create):
        assert request.headers["Accept"] == "application/vnd.docker.plugins.v1.2+json"
        assert "Content-Type" not in request.headers
    assert create.body.endswith(b"\n")
    # As the engine, no options means Opts null.
    assert json.loads(create.body) == {"Name": "v1", "Opts": None}


def test_scope_comes_from_capabilities(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    shared, plain = unique("glob"), unique("nocap")
    serve(plugins, tmp_path / "g", dirs.sockets / f"{shared}.sock", scope="global")
    serve(plugins, tmp_path / "n", dirs.sockets / f"{plain}.sock", flaws={"no-capabilities"})
    with runtime_with_client(tmp_path / "state") as rt:
        assert rt.volumes.create("v1", driver=shared).scope == "global"
        # Capabilities is optional: without it the engine assumes local.
        assert rt.volumes.create("v2", driver=plain).scope == "local"


def test_a_plugin_that_is_not_a_volume_driver_is_refused(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique("authz")
    serve(plugins, tmp_path / "a", dirs.sockets / f"{name}.sock", implements=("authz",))
    with runtime_with_client(tmp_path / "state") as rt:
        with pytest.raises(NotSupported, match=r"implements authz, not VolumeDriver"):
            rt.volumes.create("v1", driver=name)
        assert rt.volumes.list() == []


def test_unknown_plugin_is_an_unknown_driver(dirs: PluginDirs, tmp_path: Path) -> None:
    with (
        runtime_with_client(tmp_path / "state") as rt,
        pytest.raises(NotFound, match="no volume driver named 'absent-x'") as raised,
    ):
        rt.volumes.create("v1", driver="absent-x")
    # it says where Docker plugins were looked for, as `plugin check` does
    message = str(raised.value)
    assert message.startswith("no volume driver named 'absent-x'; installed drivers: ")
    assert message.endswith(
        f"; no Docker volume plugin 'absent-x' either (looked in {dirs.sockets}, {dirs.etc}, "
        f"{dirs.usr})"
    )


def test_plugin_errors_become_the_cores_errors(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    plugin = serve(plugins, tmp_path / "data", dirs.sockets / f"{name}.sock")
    driver = connect(find_plugin(name), DriverContext(tmp_path / "unused"), **FAST)  # type: ignore[arg-type]
    try:
        with pytest.raises(NotFound, match=rf"plugin {name}: VolumeDriver.Get v9: volume v9"):
            driver.get("v9")
        driver.create("v1", {})
        driver.mount("v1", "a", {})
        with pytest.raises(InUse, match="volume v1 is in use"):
            driver.remove("v1", {})
        with pytest.raises(InvalidArgument, match="invalid volume name"):
            driver.create("-bad", {})
        assert "v1" in plugin.volumes
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("message", "status", "expected"),
    [
        ("volume not found", 500, NotFound),
        ("no such volume: x", 500, NotFound),
        ("volume is in use", 500, InUse),
        ('invalid option "x"', 500, InvalidArgument),
        ("volume must have either remote or backend type", 500, InvalidArgument),
        ("not supported", 500, NotSupported),
        ('unsupported backend option "x"', 500, InvalidArgument),
        ("404 page not found", 404, NotFound),
        ("Bad Request", 400, InvalidArgument),
    ],
)
def test_err_text_picks_the_error_kind(message: str, status: int, expected: type) -> None:
    assert error_class(message, status) is expected


def test_a_stale_socket_is_unavailable_after_the_backoff(dirs: PluginDirs) -> None:
    name = unique("stale")
    path = dirs.sockets / f"{name}.sock"
    # A socket file with nothing listening: what a crashed plugin leaves.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    client = PluginClient(find_plugin(name), backoff=(0.1, 0.2), timeout=2)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        client.activate()
    spent = time.monotonic() - started
    message = str(caught.value)
    assert f"plugin {name} at unix://{path}" in message
    assert "3 attempts" in message
    assert f"remove the stale socket {path}" in message
    assert spent >= 0.3  # it waited 0.1 then 0.2 between the three attempts


def test_a_restarted_plugin_is_reached_again(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    path = dirs.sockets / f"{name}.sock"
    first = serve(plugins, tmp_path / "data", path)
    driver = connect(find_plugin(name), DriverContext(tmp_path / "unused"), **FAST)  # type: ignore[arg-type]
    try:
        driver.create("v1", {})
        first.stop()
        path.unlink()
        with pytest.raises(Unavailable, match="cannot be reached"):
            driver.list()
        second = serve(plugins, tmp_path / "data", path)
        second.volumes = first.volumes  # the plugin kept its state across the restart
        assert [v.name for v in driver.list()] == ["v1"]
    finally:
        driver.close()


def test_a_slow_call_times_out_with_a_clear_error(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique("slow")
    serve(
        plugins,
        tmp_path / "data",
        dirs.sockets / f"{name}.sock",
        delays={"VolumeDriver.Mount": 1.5},
    )
    driver = connect(find_plugin(name), DriverContext(tmp_path / "u"), backoff=(), timeout=0.3)  # type: ignore[arg-type]
    try:
        driver.create("v1", {})
        with pytest.raises(Unavailable, match=r"did not answer VolumeDriver.Mount within 0.3 s"):
            driver.mount("v1", "a", {})
        time.sleep(1.3)  # let the plugin finish the slow call; the next one must work
        assert driver.get("v1").name == "v1"
    finally:
        driver.close()


def test_engine_timeouts_are_the_default() -> None:
    client = PluginClient(PluginAddress("p", "unix:///nonexistent.sock"))
    assert client.backoff == (1.0, 2.0, 4.0, 8.0)
    assert client.timeout_for("VolumeDriver.Create") == 120
    assert client.timeout_for("VolumeDriver.Mount") == 120
    for method in ("Remove", "Path", "Unmount", "List", "Get", "Capabilities"):
        assert client.timeout_for(f"VolumeDriver.{method}") == 60


# -- TCP and TLS --------------------------------------------------------------


def test_tcp_spec_plugin(dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path) -> None:
    name = unique("tcp")
    plugin = MiniPlugin(tmp_path / "data")
    plugins.append(plugin)
    port = plugin.serve_tcp()
    (dirs.etc / f"{name}.spec").write_text(f"tcp://127.0.0.1:{port}\n")
    with runtime_with_client(tmp_path / "state") as rt:
        rt.volumes.create("v1", driver=name)
        (rt.volumes.mount("v1", "c1") / "f").write_text("over tcp")
        rt.volumes.unmount("v1", "c1")
    assert (tmp_path / "data" / "v1" / "f").read_text() == "over tcp"
    assert plugin.requests[-1].headers["Host"] == f"127.0.0.1:{port}"


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    base = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        *,
        ca: bool = False,
        usage: x509.ObjectIdentifier | None = None,
        ip: str | None = None,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        issuer_name, issuer_key = issuer or (name, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if ip is not None:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue("cargohold test CA", ca_key, None, ca=True)
    ca_name = ca_cert.subject
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = issue(
        "127.0.0.1",
        server_key,
        (ca_name, ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        ip="127.0.0.1",
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = issue("engine", client_key, (ca_name, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    write(base / "ca", ca_cert, ca_key)
    write(base / "server", server, server_key)
    write(base / "client", client, client_key)
    return Pki(
        base / "ca.crt",
        base / "server.crt",
        base / "server.key",
        base / "client.crt",
        base / "client.key",
    )


def tls_plugin(plugins: list[MiniPlugin], root: Path, pki: Pki) -> tuple[MiniPlugin, int]:
    """A plugin on TLS that demands a client certificate signed by the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    plugin = MiniPlugin(root)
    plugins.append(plugin)
    return plugin, plugin.serve_tcp(context)


def test_json_spec_with_tls_and_a_client_certificate(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path, pki: Pki
) -> None:
    name = unique("tls")
    plugin, port = tls_plugin(plugins, tmp_path / "data", pki)
    spec = {
        "Name": "ignored: the file name is the plugin's name",
        "Addr": f"https://127.0.0.1:{port}",
        "TLSConfig": {
            "InsecureSkipVerify": False,
            "CAFile": str(pki.ca),
            "CertFile": str(pki.client_cert),
            "KeyFile": str(pki.client_key),
        },
    }
    (dirs.usr / f"{name}.json").write_text(json.dumps(spec))
    found = find_plugin(name)
    assert found is not None and found.name == name and found.tls is not None
    with runtime_with_client(tmp_path / "state") as rt:
        rt.volumes.create("v1", driver=name, opts={"k": "v"})
        assert rt.volumes.get("v1").status == {"opts": {"k": "v"}}
    assert "v1" in plugin.volumes


def test_tls_without_a_client_certificate_is_refused_by_the_plugin(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path, pki: Pki
) -> None:
    name = unique("tls")
    plugin, port = tls_plugin(plugins, tmp_path / "data", pki)
    tls = {"CAFile": str(pki.ca)}
    (dirs.etc / f"{name}.json").write_text(
        json.dumps({"Addr": f"https://127.0.0.1:{port}", "TLSConfig": tls})
    )
    with runtime_with_client(tmp_path / "state") as rt, pytest.raises(Unavailable) as caught:
        rt.volumes.create("v1", driver=name)
    assert f"https://127.0.0.1:{port}" in str(caught.value)
    assert plugin.volumes == {}


def test_tls_verifies_the_plugin_unless_told_not_to(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path, pki: Pki
) -> None:
    _, port = tls_plugin(plugins, tmp_path / "data", pki)
    client_files = {"CertFile": str(pki.client_cert), "KeyFile": str(pki.client_key)}
    wrong_ca = unique("tls")
    # The client certificate is no CA for the server's certificate: verification fails.
    (dirs.etc / f"{wrong_ca}.json").write_text(
        json.dumps(
            {
                "Addr": f"https://127.0.0.1:{port}",
                "TLSConfig": {**client_files, "CAFile": str(pki.client_cert)},
            }
        )
    )
    no_ca = unique("tls")
    # As the engine: TLSConfig without CAFile means the server is not verified.
    (dirs.etc / f"{no_ca}.json").write_text(
        json.dumps({"Addr": f"https://127.0.0.1:{port}", "TLSConfig": client_files})
    )
    with runtime_with_client(tmp_path / "state") as rt:
        with pytest.raises(Unavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            rt.volumes.create("v1", driver=wrong_ca)
        assert rt.volumes.create("v2", driver=no_ca).name == "v2"


def test_an_https_spec_file_is_dialled_without_verification_as_the_engine_does(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path, pki: Pki
) -> None:
    # moby gives every socket and .spec plugin InsecureSkipVerify: only .json verifies.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)  # signed by a CA no one trusts
    plugin = MiniPlugin(tmp_path / "data")
    plugins.append(plugin)
    port = plugin.serve_tcp(context)
    name = unique("tls")
    (dirs.etc / f"{name}.spec").write_text(f"https://127.0.0.1:{port}\n")
    found = find_plugin(name)
    assert found is not None and found.tls == TLSSettings(insecure_skip_verify=True)
    with runtime_with_client(tmp_path / "state") as rt:
        assert rt.volumes.create("v1", driver=name).name == "v1"
    assert "v1" in plugin.volumes


# -- the command line ---------------------------------------------------------


def cargohold(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "cargohold"), "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


def test_cli_uses_a_plugin_by_name(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    plugin = serve(plugins, tmp_path / "data", dirs.sockets / f"{name}.sock")
    state = tmp_path / "state"
    made = cargohold("volume", "create", "-d", name, "-o", "color=blue", "v1", state=state)
    assert made.returncode == 0, made.stderr
    assert plugin.volumes["v1"].opts == {"color": "blue"}
    inspected = cargohold("volume", "inspect", "v1", state=state)
    assert json.loads(inspected.stdout)[0]["Driver"] == name
    listed = cargohold("volume", "ls", state=state)
    assert name in listed.stdout and "v1" in listed.stdout
    plugin.volumes["v1"].refs["c1"] = 1  # a container of the plugin's holds it
    refused = cargohold("volume", "rm", "v1", state=state)
    assert refused.returncode == 1
    assert f"plugin {name}: VolumeDriver.Remove v1: volume v1 is in use" in refused.stderr
    plugin.volumes["v1"].refs.clear()
    assert cargohold("volume", "rm", "v1", state=state).returncode == 0
    assert plugin.volumes == {}


def test_unknown_driver_on_the_cli_names_installed_drivers_and_plugin_dirs(
    dirs: PluginDirs, tmp_path: Path
) -> None:
    refused = cargohold("volume", "create", "-d", "nosuchdrv", "v1", state=tmp_path / "state")
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "Error: no volume driver named 'nosuchdrv'; installed drivers: "
    )
    assert "local" in refused.stderr
    assert f"(looked in {dirs.sockets}, {dirs.etc}, {dirs.usr})" in refused.stderr


def test_driver_ls_lists_docker_plugins_as_such(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    serve(plugins, tmp_path / "data", dirs.sockets / f"{name}.sock")
    serve(plugins, tmp_path / "nested", dirs.sockets / "nested" / "nested.sock")
    (dirs.etc / "remote.spec").write_text("tcp://127.0.0.1:7\n")
    (dirs.usr / "remote.spec").write_text("tcp://127.0.0.1:8\n")  # the first place wins
    (dirs.etc / "broken.spec").write_text("no-scheme\n")
    (dirs.etc / "local.spec").write_text("tcp://127.0.0.1:9\n")  # the installed driver wins
    (dirs.sockets / ".cargohold").mkdir()  # a server's private corner is no plugin
    listed = cargohold("driver", "ls", "--format", "json", state=tmp_path / "state")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["local"]["kind"] == "installed"
    plugins_found = {n: r for n, r in rows.items() if r["kind"] == "docker-plugin"}
    assert sorted(plugins_found) == sorted([name, "nested", "remote", "broken"])
    assert plugins_found[name]["address"] == f"unix://{dirs.sockets / name}.sock"
    assert plugins_found["remote"]["address"] == f"tcp://127.0.0.1:7 (from {dirs.etc}/remote.spec)"
    assert "has no scheme" in plugins_found["broken"]["error"]
    assert plugins_found[name]["scope"] is None  # nothing was contacted
    table = cargohold("driver", "ls", state=tmp_path / "state").stdout
    assert f"Docker plugin at unix://{dirs.sockets / name}.sock" in table
    assert "Docker plugin, unusable: plugin address 'no-scheme'" in table
    assert [line.split()[0] for line in table.splitlines()].count("local") == 1


def test_option_help_for_a_plugin_says_options_pass_through(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path
) -> None:
    name = unique()
    plugin = serve(plugins, tmp_path / "data", dirs.sockets / f"{name}.sock")
    shown = cargohold("volume", "create", "-d", name, "-o", "help", state=tmp_path / "state")
    assert shown.returncode == 0, shown.stderr
    assert f"driver {name} (scope local) declares no options" in shown.stdout
    assert "every -o key=value passes through to it unchanged" in shown.stdout
    assert "(none)" not in shown.stdout
    assert plugin.volumes == {}, "asking for help created nothing"


def test_volumes_of_a_dead_plugin_still_list(
    dirs: PluginDirs, plugins: list[MiniPlugin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("dead")
    path = dirs.sockets / f"{name}.sock"
    plugin = serve(plugins, tmp_path / "data", path)
    names = [f"v{i}" for i in range(5)]
    with runtime_with_client(tmp_path / "state") as rt:
        for volume_name in names:
            rt.volumes.create(volume_name, driver=name)
    plugin.stop()  # killed: its socket stays behind, nothing listens
    assert path.exists()
    monkeypatch.setenv(client_plugin.BACKOFF_ENV, "1")
    started = time.monotonic()
    with runtime_with_client(tmp_path / "state") as rt:
        listed = rt.volumes.list()
    spent = time.monotonic() - started
    assert [v.name for v in listed] == names
    for volume in listed:
        assert f"plugin {name} at unix://{path} cannot be reached" in volume.status["error"]
    # One failed activation (about 1 s of backoff) serves all five, not five of them.
    assert spent < 3, f"listing took {spent:.1f} s"
