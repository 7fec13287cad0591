"""``cargohold plugin check``: the conformance suite, against plugins good and bad.

A correct plugin passes every check; a plugin broken in one known way fails
exactly the check that covers it; our own server (``cargohold serve``) passes
everything, and the client driver uses it like any other plugin. rclone's
report is in test_rclone.py.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import InvalidArgument, Runtime, VolumeDriver, hookimpl
from cargohold.core.api.volume_driver import DriverContext
from cargohold.core.testing.harness import Harness, new_name
from cargohold.core.testing.volume_drivers import VolumeDriverConformance
from cargohold.plugins.docker.client import BACKOFF_ENV, connect
from cargohold.plugins.docker.discovery import SOCKET_DIR_ENV, PluginAddress
from cargohold.plugins.docker.plugin_checks import run_checks

from .conftest import Served, StartServe
from .miniplugin import MiniPlugin

CARGOHOLD = Path(sys.executable).with_name("cargohold")
ALL_CHECKS = [
    "activate",
    "capabilities",
    "create",
    "create-idempotent",
    "get-unknown",
    "get",
    "created-at",
    "list-get-consistent",
    "mount-repeated-id",
    "mount-distinct-ids",
    "unmount-unknown-id",
    "path",
    "remove-while-mounted",
    "malformed-requests",
    "remove",
]
FAST: dict[str, Any] = {"backoff": (), "timeout": 10.0}


@pytest.fixture
def socket_dir(short_dir: Path) -> Path:
    path = short_dir / "sockets"
    path.mkdir()
    return path


@pytest.fixture
def start_mini(socket_dir: Path, tmp_path: Path) -> Iterator[object]:
    """Starts MiniPlugins on sockets in `socket_dir`; all stopped at the end."""
    started: list[MiniPlugin] = []

    def start(**kwargs: object) -> tuple[MiniPlugin, Path]:
        name = f"mini-{secrets.token_hex(3)}"
        plugin = MiniPlugin(tmp_path / name, **kwargs)  # type: ignore[arg-type]
        path = socket_dir / f"{name}.sock"
        plugin.serve_unix(path)
        started.append(plugin)
        return plugin, path

    yield start
    for plugin in started:
        plugin.stop()


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CARGOHOLD), "plugin", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, BACKOFF_ENV: "", **(env or {})},
    )


def test_a_correct_plugin_passes_every_check(start_mini: object) -> None:
    plugin, path = start_mini()  # type: ignore[operator]
    result = check(str(path), "--format", "json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["passed"] is True
    assert [c["name"] for c in report["checks"]] == ALL_CHECKS
    assert all(c["passed"] and c["evidence"] for c in report["checks"])
    assert report["counts"] == {"passed": len(ALL_CHECKS), "warnings": 0, "failed": 0}
    # It made its volumes with a unique prefix and removed every one.
    assert plugin.volumes == {}
    created = {
        json.loads(r.body)["Name"]
        for r in plugin.requests
        if r.method.endswith("Create") and r.body.startswith(b'{"Name": "chk-')
    }
    assert len(created) == 1 and next(iter(created)).startswith("chk-")


@pytest.mark.parametrize(
    ("flaw", "failing"),
    [
        ("ids-as-set", {"mount-repeated-id"}),
        ("created-at-no-zone", {"created-at"}),
        ("accept-any-name", {"malformed-requests"}),  # `docker volume create ../x` reaches it
    ],
)
def test_a_flaw_fails_the_check_that_covers_it(
    start_mini: object, flaw: str, failing: set[str]
) -> None:
    plugin, path = start_mini(flaws={flaw})  # type: ignore[operator]
    report = run_checks(PluginAddress("mini", f"unix://{path}"), **FAST)
    assert {c.name for c in report.checks if not c.passed} == failing
    assert not report.passed
    assert plugin.volumes == {} or set(plugin.volumes) == {""}  # "" is the flaw's own leak


@pytest.mark.parametrize(
    ("flaw", "warned"),
    [
        ("remove-while-mounted", "remove-while-mounted"),
        ("accept-missing-name", "malformed-requests"),
    ],
)
def test_what_the_engine_never_sends_is_a_warning(
    start_mini: object, flaw: str, warned: str
) -> None:
    # The engine refuses `docker volume rm` of a volume in use and always sends a Name.
    _, path = start_mini(flaws={flaw})  # type: ignore[operator]
    result = check(str(path))
    assert result.returncode == 0, result.stdout
    assert f"WARN  {warned}" in result.stdout
    assert "the Docker engine never" in result.stdout
    assert result.stdout.rstrip().endswith(f"{len(ALL_CHECKS) - 1} passed, 1 warning, 0 failed")
    _, fresh = start_mini(flaws={flaw})  # type: ignore[operator]
    report = run_checks(PluginAddress("mini", f"unix://{fresh}"), **FAST)
    assert report.passed and [c.name for c in report.checks if c.warning] == [warned]
    assert report.to_json()["counts"] == {
        "passed": len(ALL_CHECKS) - 1, "warnings": 1, "failed": 0
    }  # fmt: skip


def test_a_non_json_error_page_is_described(start_mini: object) -> None:
    _, path = start_mini(flaws={"html-errors"})  # type: ignore[operator]
    report = run_checks(PluginAddress("mini", f"unix://{path}"), **FAST)
    malformed = next(c for c in report.checks if c.name == "malformed-requests")
    assert malformed.passed
    assert (
        "invalid JSON: HTTP 500 with a non-JSON body (text/html): "
        "<html><head><title>500 Oops</title></head></html> (no Err to show)"
    ) in malformed.notes
    assert not any("empty body" in note for note in malformed.notes)


@pytest.mark.root
@pytest.mark.parametrize("flaw", [None, "never-unmounts"])
def test_mount_points_are_read_from_the_mount_table(start_mini: object, flaw: str | None) -> None:
    # A bind mount from the same filesystem, which os.path.ismount does not see.
    flaws = {flaw} if flaw else set()
    _, path = start_mini(real_mounts=True, flaws=flaws)  # type: ignore[operator]
    report = run_checks(PluginAddress("mini", f"unix://{path}"), **FAST)
    failed = {c.name: c.summary for c in report.checks if not c.passed}
    if flaw is None:
        assert failed == {}
        mounted = next(c for c in report.checks if c.name == "mount-repeated-id")
        assert any("(a mount point: True)" in note for note in mounted.notes)
    else:  # both checks look after the last Unmount
        assert set(failed) == {"mount-repeated-id", "mount-distinct-ids"}
        assert all("still a mount point after the last Unmount" in s for s in failed.values())


@pytest.mark.root
def test_btrfs_subvolumes_are_not_mount_points(tmp_path: Path, socket_dir: Path) -> None:
    # os.path.ismount is true for a subvolume's root: the check must not say "still mounted".
    from tests.snapshotters.loopfs import btrfs_missing_reason, loop_btrfs

    reason = btrfs_missing_reason()
    if reason:
        pytest.skip(reason)

    def subvolume(path: Path) -> None:
        subprocess.run(["btrfs", "subvolume", "create", str(path)], check=True, capture_output=True)

    with loop_btrfs("256M") as root:
        plugin = MiniPlugin(root / "volumes", make_volume=subvolume)
        plugin.serve_unix(socket_dir / "subvols.sock")
        try:
            address = PluginAddress("subvols", f"unix://{socket_dir}/subvols.sock")
            report = run_checks(address, **FAST)
        finally:
            plugin.stop()
    assert {c.name: c.summary for c in report.checks if not c.passed} == {}


def test_text_report_shows_each_verdict_and_its_evidence(start_mini: object) -> None:
    _, path = start_mini(flaws={"created-at-no-zone"})  # type: ignore[operator]
    result = check(str(path))
    assert result.returncode == 1
    out = result.stdout
    assert out.startswith(f"plugin {path.stem} at unix://{path}\n")
    assert "PASS  activate               Implements ['VolumeDriver']" in out
    assert "FAIL  created-at" in out and "is not RFC 3339 with a zone" in out
    assert '        > VolumeDriver.Get {"Name": "chk-' in out
    assert out.rstrip().endswith(f"{len(ALL_CHECKS) - 1} passed, 1 failed")


def test_missing_capabilities_is_allowed(start_mini: object) -> None:
    _, path = start_mini(flaws={"no-capabilities"})  # type: ignore[operator]
    report = run_checks(PluginAddress("mini", f"unix://{path}"), **FAST)
    assert report.passed
    capabilities = next(c for c in report.checks if c.name == "capabilities")
    assert "the engine assumes scope local" in capabilities.summary


def test_plugin_options_reach_create(start_mini: object) -> None:
    plugin, path = start_mini()  # type: ignore[operator]
    result = check(str(path), "-o", "remote=/x", "-o", "ro", "--format", "json")
    assert result.returncode == 0
    first = next(r for r in plugin.requests if r.method == "VolumeDriver.Create")
    assert json.loads(first.body)["Opts"] == {"remote": "/x", "ro": ""}


def test_a_tcp_plugin_is_checked_by_url(tmp_path: Path) -> None:
    plugin = MiniPlugin(tmp_path / "tcp")
    port = plugin.serve_tcp()
    try:
        result = check(f"tcp://127.0.0.1:{port}")
    finally:
        plugin.stop()
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(f"plugin 127.0.0.1 at tcp://127.0.0.1:{port}\n")


def test_an_unreachable_plugin_fails_activation_and_runs_nothing_else(socket_dir: Path) -> None:
    path = socket_dir / "dead.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    result = check("dead", "--format", "json", env={SOCKET_DIR_ENV: str(socket_dir)})
    assert result.returncode == 1
    checks = json.loads(result.stdout)["checks"]
    assert not checks[0]["passed"] and "cannot be reached" in checks[0]["summary"]
    assert all(c["summary"].startswith("not run: check ") for c in checks[1:])


def test_an_unknown_plugin_name_is_a_clear_error(socket_dir: Path) -> None:
    result = check("nobody-here", env={SOCKET_DIR_ENV: str(socket_dir)})
    assert result.returncode == 1
    assert "no Docker volume plugin named 'nobody-here': looked for" in result.stderr
    assert str(socket_dir / "nobody-here.sock") in result.stderr


# -- our own server -----------------------------------------------------------


def test_our_server_passes_every_check_in_process(served: Served) -> None:
    assert served.server.socket_path is not None
    address = PluginAddress(served.server.name, f"unix://{served.server.socket_path}")
    report = run_checks(address, **FAST)
    failed = {c.name: c.summary for c in report.checks if not c.passed}
    assert failed == {}
    assert report.cleanup == []
    assert served.runtime.volumes.list() == []


@pytest.mark.root
def test_cargohold_serve_passes_check_and_serves_the_client(
    start_serve: StartServe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = start_serve("local")
    monkeypatch.setenv(SOCKET_DIR_ENV, str(proc.socket_dir))
    result = check(proc.name)
    assert result.returncode == 0, result.stdout
    assert result.stdout.rstrip().endswith(f"{len(ALL_CHECKS)} passed, 0 failed")

    # The client side against our server: a second cargohold uses it as a driver.
    with Runtime(tmp_path / "client-state") as rt:
        rt.volumes.create("shared", driver=proc.name, labels={"who": "client"})
        path = rt.volumes.mount("shared", "c1")
        (path / "f").write_text("through two cargoholds")
        rt.volumes.unmount("shared", "c1")
        assert rt.volumes.get("shared").driver == proc.name
    # The serving side owns the volume and its bytes.
    assert path.is_relative_to(proc.state_dir)
    assert (path / "f").read_text() == "through two cargoholds"
    inspected = subprocess.run(
        [str(CARGOHOLD), "--state-dir", str(proc.state_dir), "volume", "inspect", "shared"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(inspected.stdout)[0]["Driver"] == "local"


# -- the driver conformance suite through our server and the client -----------


class ClientFor:
    """A plugin object that makes the client driver for one plugin address."""

    def __init__(self, address: PluginAddress) -> None:
        self.address = address

    @hookimpl(tryfirst=True)
    def cargohold_find_volume_driver(
        self, name: str, context: DriverContext
    ) -> VolumeDriver | None:
        if name != self.address.name:
            return None
        return connect(self.address, context, **FAST)


class RemotePluginConformance(VolumeDriverConformance):
    """The driver suite for a plugin reached through the client; subclasses set the plugin."""

    def test_unknown_options_are_refused_before_the_driver_is_called(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        """Replaced: a remote plugin declares no options, so the plugin is the one to refuse."""
        bogus = {**volume_options, "no-such-option": "1"}
        with pytest.raises(InvalidArgument, match="no-such-option"):
            harness.volumes.create(new_name(), harness.driver_name, bogus)
        assert harness.volumes.list() == []
        assert harness.driver.list() == []

    def test_missing_required_options_are_refused_before_the_driver_is_called(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        """Replaced: what a plugin requires it enforces itself; a refusal records nothing."""
        name = new_name()
        try:
            harness.volumes.create(name, harness.driver_name, {})
        except InvalidArgument as refused:
            assert f"plugin {harness.driver_name}: VolumeDriver.Create {name}" in str(refused)
            assert harness.volumes.list() == []
        else:
            assert [v.name for v in harness.volumes.list()] == [name]


class TestClientOverOurServer(RemotePluginConformance):
    """The suite driver authors run, on the local driver behind `cargohold serve` and the client."""

    driver_name = "served-local"

    @pytest.fixture
    def driver_plugin(self, served: Served) -> object:
        assert served.server.socket_path is not None
        return ClientFor(PluginAddress(self.driver_name, f"unix://{served.server.socket_path}"))
