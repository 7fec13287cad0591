"""A cargohold driver served to the real Docker engine, used by real containers.

One ``cargohold serve local`` process (a unique plugin name, its own state
directory) serves the whole module on /run/docker/plugins, where the engine
looks. Every test removes its containers and volumes; the module's teardown
stops the server and removes its socket, whatever happened.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import Runtime
from cargohold.plugins.docker.listen import SOCKET_DIR, SPEC_DIR

from ..realdocker import DockerEngine
from .conftest import PluginClient, ServeProcess, cargohold_cli, unique_name
from .tlsfiles import make_tls_files

RUN = ("run", "--rm", "--network", "none")


class EnginePlugin:
    """The served plugin, restartable, with the facts the tests check."""

    def __init__(self, root: Path) -> None:
        self.state_dir = root / "state"
        self.name = unique_name("chtest-engine")
        self.proc = self._new_process()

    def _new_process(self) -> ServeProcess:
        return ServeProcess(["local"], self.state_dir, SOCKET_DIR, self.name)

    @property
    def data_root(self) -> Path:
        return self.state_dir / "drivers" / "local"

    def refs(self, volume: str) -> dict[str, int]:
        with Runtime(self.state_dir) as runtime:
            return dict(runtime.volumes.get(volume).refs)

    def settled_refs(self, volume: str, expected: int, timeout: float = 10) -> dict[str, int]:
        """The references once ``expected`` many remain: the engine may unmount a moment
        after ``docker stop`` or ``rm -f`` returns (its exit handling runs on)."""
        deadline = time.monotonic() + timeout
        while len(refs := self.refs(volume)) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return refs

    def status(self) -> dict[str, Any]:
        client = PluginClient(self.proc.socket)
        try:
            return client.status()
        finally:
            client.close()

    def restart_after_crash(self) -> None:
        self.proc.kill()
        self.proc = self._new_process()
        self.proc.start()


@pytest.fixture(scope="module")
def plugin(docker_engine: DockerEngine) -> Iterator[EnginePlugin]:
    root = Path(tempfile.mkdtemp(prefix="chpe-", dir="/tmp"))
    served = EnginePlugin(root)
    try:
        served.proc.start()
        yield served
    finally:
        served.proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine(docker_engine: DockerEngine, busybox_image: str) -> DockerEngine:
    return docker_engine


@contextmanager
def cleanup(engine: DockerEngine, volumes: list[str], containers: list[str]) -> Iterator[None]:
    """Remove the containers, then the volumes, even when the test failed."""
    try:
        yield
    finally:
        if containers:
            engine.docker("rm", "-f", *containers, check=False)
        if volumes:
            engine.docker("volume", "rm", "-f", *volumes, check=False)


def volume_name() -> str:
    return f"chv-{secrets.token_hex(4)}"


def run_detached(
    engine: DockerEngine, image: str, volume: str, container: str, *command: str
) -> None:
    """Start ``container`` in the background with ``volume`` at /data."""
    engine.docker(
        "run", "-d", "--network", "none", "--name", container,
        "-v", f"{volume}:/data", image, *command,
    )  # fmt: skip


# keeps the container, and with it the volume's mount, until it is removed
WRITE_THEN_SLEEP = ("sh", "-c", "echo kept > /data/f; sleep 300")


def inspect(engine: DockerEngine, volume: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(engine.docker("volume", "inspect", volume).stdout)
    return found[0]


def test_create_with_options_and_labels(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol = volume_name()
    with cleanup(engine, [vol], []):
        engine.docker(
            "volume", "create", "-d", plugin.name,
            "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=16m",
            "--label", "team=storage", vol,
        )  # fmt: skip
        seen = inspect(engine, vol)
        assert seen["Driver"] == plugin.name
        assert seen["Labels"] == {"team": "storage"}
        assert seen["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"}
        assert seen["Scope"] == "local"
        assert seen["Mountpoint"] == str(plugin.data_root / vol / "_data")
        # the options reached the driver: the container sees a 16 MiB tmpfs
        mounts = engine.docker(*RUN, "-v", f"{vol}:/data", busybox_image, "cat", "/proc/mounts")
        line = next(m for m in mounts.stdout.splitlines() if " /data " in m)
        assert line.startswith("tmpfs /data tmpfs") and "size=16384k" in line
        assert plugin.refs(vol) == {}


def test_run_writes_data_the_driver_holds(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol = volume_name()
    with cleanup(engine, [vol], []):
        engine.docker("volume", "create", "-d", plugin.name, vol)
        engine.docker(
            *RUN, "-v", f"{vol}:/data", busybox_image, "sh", "-c", "echo hello > /data/greeting"
        )
        assert (plugin.data_root / vol / "_data" / "greeting").read_text() == "hello\n"
        assert plugin.refs(vol) == {}, "the engine unmounted when the container ended"


def test_two_containers_share_a_volume(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol, first, second = volume_name(), unique_name("chc"), unique_name("chc")
    with cleanup(engine, [vol], [first, second]):
        engine.docker("volume", "create", "-d", plugin.name, vol)
        for container in (first, second):
            run_detached(engine, busybox_image, vol, container, "sleep", "300")
        engine.docker("exec", first, "sh", "-c", "echo shared > /data/note")
        assert engine.docker("exec", second, "cat", "/data/note").stdout == "shared\n"
        refs = plugin.refs(vol)
        assert len(refs) == 2 and set(refs.values()) == {1}, "one reference per container"
        mounts = {m["id"] for m in plugin.status()["active_mounts"] if m["volume"] == vol}
        assert mounts == set(refs)
        engine.docker("rm", "-f", first)
        assert len(plugin.settled_refs(vol, 1)) == 1
        engine.docker("rm", "-f", second)
        assert plugin.settled_refs(vol, 0) == {}


def test_docker_cp_repeats_the_mount_id_and_the_count_holds(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin, tmp_path: Path
) -> None:
    vol, container = volume_name(), unique_name("chc")
    (tmp_path / "copied").write_text("through docker cp\n")
    with cleanup(engine, [vol], [container]):
        engine.docker("volume", "create", "-d", plugin.name, vol)
        run_detached(engine, busybox_image, vol, container, "sleep", "300")
        (mount_id,) = plugin.refs(vol)
        before = plugin.status()["requests"]
        engine.docker("cp", str(tmp_path / "copied"), f"{container}:/data/copied")
        after = plugin.status()["requests"]
        # cp mounted again (with the container's own id) and unmounted as often; counting
        # ids as a set would have dropped the running container's reference here
        mounted = after["VolumeDriver.Mount"] - before["VolumeDriver.Mount"]
        unmounted = after["VolumeDriver.Unmount"] - before.get("VolumeDriver.Unmount", 0)
        assert mounted >= 1 and unmounted == mounted
        assert plugin.refs(vol) == {mount_id: 1}, "the running container keeps its reference"
        assert engine.docker("exec", container, "cat", "/data/copied").stdout == (
            "through docker cp\n"
        )
        assert (plugin.data_root / vol / "_data" / "copied").exists()
        engine.docker("stop", "-t", "0", container)
        assert plugin.settled_refs(vol, 0) == {}, "stopping the container unmounted the volume"


def test_volume_inspect_ls_rm(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol = volume_name()
    with cleanup(engine, [vol], []):
        engine.docker("volume", "create", "-d", plugin.name, vol)
        listed = engine.docker(
            "volume", "ls", "--filter", f"driver={plugin.name}", "--format", "{{.Name}}"
        )
        assert vol in listed.stdout.split()
        seen = inspect(engine, vol)
        assert seen["Name"] == vol and seen["Driver"] == plugin.name
        assert seen["CreatedAt"]  # the engine shows the plugin's RFC 3339 time
        engine.docker("volume", "rm", vol)
        assert not (plugin.data_root / vol).exists()
        with Runtime(plugin.state_dir) as runtime:
            assert vol not in [v.name for v in runtime.volumes.list()]
        assert engine.docker("volume", "inspect", vol, check=False).returncode != 0


def test_a_volume_made_with_cargohold_is_one_docker_can_use(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol = volume_name()
    with cleanup(engine, [vol], []):
        # the served plugin and the command line share one state directory
        with Runtime(plugin.state_dir) as runtime:
            runtime.volumes.create(vol, "local")
            (plugin.data_root / vol / "_data" / "made-here").write_text("by cargohold\n")
        listed = engine.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout
        assert f"{plugin.name} {vol}" in listed.splitlines()
        out = engine.docker(*RUN, "-v", f"{vol}:/data", busybox_image, "cat", "/data/made-here")
        assert out.stdout == "by cargohold\n"


def test_rm_is_refused_while_a_container_uses_the_volume(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol, container = volume_name(), unique_name("chc")
    with cleanup(engine, [vol], [container]):
        engine.docker("volume", "create", "-d", plugin.name, vol)
        run_detached(engine, busybox_image, vol, container, *WRITE_THEN_SLEEP)
        refused = engine.docker("volume", "rm", vol, check=False)
        assert refused.returncode != 0 and "in use" in refused.stderr
        # the data, the store and the plugin's reference are untouched
        assert (plugin.data_root / vol / "_data").is_dir()
        assert len(plugin.refs(vol)) == 1
        engine.docker("rm", "-f", container)
        engine.docker("volume", "rm", vol)
        assert not (plugin.data_root / vol).exists()


def test_plugin_killed_and_restarted_while_the_engine_runs(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol = volume_name()
    with cleanup(engine, [vol], []):
        engine.docker("volume", "create", "-d", plugin.name, "--label", "keep=yes", vol)
        engine.docker(
            *RUN, "-v", f"{vol}:/data", busybox_image, "sh", "-c", "echo before > /data/f"
        )
        plugin.restart_after_crash()  # SIGKILL: the socket stays, stale; the new server replaces it
        assert "removing stale plugin socket" in plugin.proc.output()
        listed = engine.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout
        assert f"{plugin.name} {vol}" in listed.splitlines()
        assert inspect(engine, vol)["Labels"] == {"keep": "yes"}
        out = engine.docker(
            *RUN,
            "-v",
            f"{vol}:/data",
            busybox_image,
            "sh",
            "-c",
            "cat /data/f; echo after >> /data/f",
        )
        assert out.stdout == "before\n"
        assert (plugin.data_root / vol / "_data" / "f").read_text() == "before\nafter\n"
        assert plugin.refs(vol) == {}


def test_engine_restarted_while_the_plugin_runs(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol = volume_name()
    with cleanup(engine, [vol], []):
        engine.docker("volume", "create", "-d", plugin.name, "--label", "owner=ops", vol)
        engine.docker(
            *RUN, "-v", f"{vol}:/data", busybox_image, "sh", "-c", "echo durable > /data/f"
        )
        pid = plugin.status()["pid"]
        engine.restart()
        engine.docker("version")  # healthy again for the tests after this one
        seen = inspect(engine, vol)
        assert seen["Driver"] == plugin.name and seen["Labels"] == {"owner": "ops"}
        out = engine.docker(*RUN, "-v", f"{vol}:/data", busybox_image, "cat", "/data/f")
        assert out.stdout == "durable\n"
        assert plugin.status()["pid"] == pid, "the same plugin process served both engines"
        assert plugin.refs(vol) == {}
    assert plugin.proc.process is not None and plugin.proc.process.poll() is None


def test_engine_reaches_a_tls_plugin_through_its_json_file(
    engine: DockerEngine, busybox_image: str
) -> None:
    root = Path(tempfile.mkdtemp(prefix="chpt-", dir="/tmp"))
    tls = make_tls_files(root / "tls")
    name, vol = unique_name("chtest-tls"), volume_name()
    spec = SPEC_DIR / f"{name}.json"
    proc = ServeProcess(
        [
            "local", "--tcp", "127.0.0.1:0",
            "--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key),
            "--tls-ca", str(tls.ca),
            "--tls-client-cert", str(tls.client_cert), "--tls-client-key", str(tls.client_key),
        ],
        root / "state", SOCKET_DIR, name,
    )  # fmt: skip
    try:
        proc.start(wait_for=spec)
        assert json.loads(spec.read_text())["Addr"].startswith("https://127.0.0.1:")
        with cleanup(engine, [vol], []):
            engine.docker("volume", "create", "-d", name, vol)
            engine.docker(
                *RUN, "-v", f"{vol}:/data", busybox_image, "sh", "-c", "echo tls > /data/f"
            )
            data = root / "state" / "drivers" / "local" / vol / "_data" / "f"
            assert data.read_text() == "tls\n"
            engine.docker("volume", "rm", vol)
            assert not data.exists()
        assert proc.signal(signal.SIGTERM) == 0
        assert not spec.exists(), "the spec file goes with the server"
    finally:
        proc.stop()
        spec.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)


def test_engine_killed_leaves_references_the_operator_releases(
    engine: DockerEngine, busybox_image: str, plugin: EnginePlugin
) -> None:
    vol, container = volume_name(), unique_name("chc")
    with cleanup(engine, [vol], [container]):
        engine.docker("volume", "create", "-d", plugin.name, vol)
        run_detached(engine, busybox_image, vol, container, *WRITE_THEN_SLEEP)
        (mount_id,) = plugin.refs(vol)
        engine.crash_and_restart()  # SIGKILL while the container uses the volume
        engine.docker("rm", "-f", container)
        # the engine never unmounts what the crash lost: the reference stays, removal fails
        assert plugin.settled_refs(vol, 0, timeout=2) == {mount_id: 1}
        refused = engine.docker("volume", "rm", vol, check=False)
        assert refused.returncode != 0 and f"in use - [{mount_id}]" in refused.stderr

        status = cargohold_cli(plugin.state_dir, "plugin", "status", plugin.name)
        assert status.returncode == 0, status.stderr
        assert mount_id in status.stdout
        assert "cargohold volume unmount VOLUME --id MOUNT_ID" in status.stdout
        listed = cargohold_cli(plugin.state_dir, "volume", "unmount", vol)
        assert listed.returncode == 0 and mount_id in listed.stdout
        wrong = cargohold_cli(plugin.state_dir, "volume", "unmount", vol, "--id", "f" * 64)
        assert wrong.returncode == 1 and f"has no reference {'f' * 64}" in wrong.stderr
        assert plugin.refs(vol) == {mount_id: 1}, "a refused release changed nothing"

        released = cargohold_cli(plugin.state_dir, "volume", "unmount", vol, "--id", mount_id)
        assert released.returncode == 0, released.stderr
        assert f"released {mount_id} (1 mount)" in released.stdout
        assert plugin.refs(vol) == {}
        assert (plugin.data_root / vol / "_data" / "f").read_text() == "kept\n"
        engine.docker("volume", "rm", vol)
        assert not (plugin.data_root / vol).exists()
