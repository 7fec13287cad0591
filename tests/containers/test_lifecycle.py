"""Containers end to end: real namespaces, real mounts, the real command line."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from cargohold.core import Runtime
from cargohold.core.api.container_mounts import parse_all

from .conftest import IMAGE, cli

pytestmark = pytest.mark.root


def run(rt: Runtime, *command: str, **kwargs: object) -> tuple[int, str, str]:
    """Create and run a container to its end in-process; return code, stdout, stderr."""
    mounts = kwargs.pop("mounts", [])
    container = rt.containers.create(IMAGE, command, mounts=mounts, **kwargs)  # type: ignore[arg-type]
    code = rt.containers.supervise(container.id)
    out = b"".join(d for s, d in rt.containers.logs(container.id) if s == "stdout")
    err = b"".join(d for s, d in rt.containers.logs(container.id) if s == "stderr")
    return code, out.decode(), err.decode()


def test_exit_codes_and_streams_as_docker(rt: Runtime) -> None:
    done = cli(rt.state_dir, "run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    missing = cli(rt.state_dir, "run", "--rm", IMAGE, "nosuch")
    assert missing.returncode == 127
    assert 'exec: "nosuch": executable file not found in $PATH' in missing.stderr
    not_exec = cli(rt.state_dir, "run", "--rm", IMAGE, "/etc/passwd")
    assert not_exec.returncode == 126 and "cannot execute" in not_exec.stderr
    # as under Docker: PID 1 of a namespace is immune to its own SIGKILL...
    immune = cli(rt.state_dir, "run", "--rm", IMAGE, "sh", "-c", "kill -9 $$; echo alive")
    assert (immune.returncode, immune.stdout) == (0, "alive\n")
    no_image = cli(rt.state_dir, "run", "--rm", "nosuch:1", "true")
    assert no_image.returncode == 125 and "no such image: nosuch:1" in no_image.stderr
    # --rm left nothing behind, whatever the outcome
    assert cli(rt.state_dir, "ps", "-a", "-q").stdout == ""


def test_namespaces_user_env_workdir(rt: Runtime) -> None:
    script = (
        "echo pid=$$; hostname; id -u; id -G; pwd; echo $GREETING;"
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ';"
        "ls /dev | tr '\\n' ' '"
    )
    code, out, _ = run(
        rt, "sh", "-c", script, env=["GREETING=hi"], user="app", workdir="/work/here"
    )
    lines = out.splitlines()
    container = rt.containers.list(all=True)[0]
    assert code == 0
    assert lines[0] == "pid=1"
    assert lines[1] == container.id[:12]
    assert lines[2] == "1000" and set(lines[3].split()) == {"1000", "2000"}
    assert lines[4] == "/work/here" and lines[5] == "hi"
    assert lines[6] == "lo"  # --network none: only a loopback
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= set(
        lines[7].split()
    )


def test_etc_files_as_docker_writes_them(rt: Runtime) -> None:
    code, out, _ = run(rt, "sh", "-c", "cat /etc/hostname; grep -c localhost /etc/hosts")
    container = rt.containers.list(all=True)[0]
    assert code == 0 and out.split() == [container.id[:12], "2"]
    code, out, _ = run(rt, "cat", "/etc/resolv.conf", network="host")
    assert code == 0 and out == Path("/etc/resolv.conf").read_text()


def test_read_only_root_and_host_network(rt: Runtime) -> None:
    code, _, err = run(rt, "sh", "-c", "touch /x", readonly=True)
    assert code == 1 and "Read-only file system" in err
    code, out, _ = run(rt, "sh", "-c", "cat /proc/net/dev | wc -l", network="host")
    assert code == 0 and int(out) > 3  # the host's interfaces, not just lo


def test_detached_logs_stop_and_wait(rt: Runtime) -> None:
    service = rt.containers
    stubborn = service.create(IMAGE, ["sh", "-c", "echo started; sleep 100"])
    service.start(stubborn.id)
    polite = service.create(
        IMAGE, ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done"]
    )
    service.start(polite.id)
    quick = service.create(IMAGE, ["sh", "-c", "sleep 0.2; exit 4"])
    service.start(quick.id)
    assert service.wait(quick.id) == 4
    killed = service.start(service.create(IMAGE, ["sleep", "100"]).id)
    service.kill(killed.id, signal.SIGKILL)  # PID 1 only dies of signals from outside
    assert service.wait(killed.id) == 128 + signal.SIGKILL
    assert {c.id for c in service.list()} >= {stubborn.id, polite.id}
    _wait_for_log(rt, polite.id, b"up")
    began = time.monotonic()
    service.stop(polite.id, timeout=10)
    assert time.monotonic() - began < 5  # it handled SIGTERM: no SIGKILL wait
    assert service.get(polite.id).state.exit_code == 0
    assert b"bye\n" in b"".join(d for _, d in service.logs(polite.id))
    began = time.monotonic()
    service.stop(stubborn.id, timeout=1)  # PID 1 without a handler ignores SIGTERM
    assert time.monotonic() - began >= 1
    assert service.get(stubborn.id).state.exit_code == 137
    done = cli(rt.state_dir, "logs", stubborn.id[:10])
    assert done.stdout == "started\n"
    assert cli(rt.state_dir, "wait", stubborn.id).stdout == "137\n"
    slow = service.start(service.create(IMAGE, ["sh", "-c", "echo a; sleep 0.5; echo b >&2"]).id)
    followed = cli(rt.state_dir, "logs", "-f", slow.id)  # returns when the container ends
    assert (followed.stdout, followed.stderr) == ("a\n", "b\n")


def _wait_for_log(rt: Runtime, container: str, text: bytes) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if text in b"".join(d for _, d in rt.containers.logs(container)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the log of {container}")


def test_lost_supervisor_means_exited(rt: Runtime) -> None:
    import os
    import signal

    service = rt.containers
    container = service.start(service.create(IMAGE, ["sleep", "100"]).id)
    os.kill(container.state.supervisor, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (after := service.get(container.id)).state.running:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert after.state.status == "exited" and after.state.exit_code == 255
    assert "supervising process ended" in after.state.error


def test_name_conflicts_and_lookup(rt: Runtime) -> None:
    first = rt.containers.create(IMAGE, ["true"], name="web")
    done = cli(rt.state_dir, "create", "--name", "web", IMAGE, "true")
    assert done.returncode == 125
    assert '"/web" is already in use by container ' + first.id in done.stderr
    assert rt.containers.get("web").id == first.id
    assert rt.containers.get(first.id[:8]).id == first.id
    listed = cli(rt.state_dir, "ps", "-a").stdout
    assert "web" in listed and "Created" in listed
    inspected = cli(rt.state_dir, "inspect", "web")
    assert '"Name": "/web"' in inspected.stdout
    refused = cli(rt.state_dir, "rm", "nosuch")
    assert refused.returncode == 1 and "no such container: nosuch" in refused.stderr.lower()


def test_running_container_is_not_removed_without_force(rt: Runtime) -> None:
    service = rt.containers
    container = service.start(service.create(IMAGE, ["sleep", "100"]).id)
    done = cli(rt.state_dir, "rm", container.id)
    assert done.returncode == 1 and "stop it first" in done.stderr
    assert cli(rt.state_dir, "kill", "-s", "TERM", container.id).returncode == 0
    time.sleep(0.2)
    assert service.get(container.id).state.running  # PID 1 without a handler ignores it
    assert cli(rt.state_dir, "rm", "-f", container.id).returncode == 0
    assert service.find(container.id) is None
    bad = cli(rt.state_dir, "kill", "-s", "NOPE", "x")
    assert bad.returncode == 2 and "unknown signal 'NOPE'" in bad.stderr


def test_events_are_heard(rt: Runtime) -> None:
    heard: list[str] = []

    class Listener:
        from cargohold.core import hookimpl

        @hookimpl
        def cargohold_container_event(self, event: object) -> None:
            heard.append(event.action)  # type: ignore[attr-defined]

    rt.plugin_manager.register(Listener())
    container = rt.containers.create(IMAGE, ["true"], autoremove=True)
    assert rt.containers.supervise(container.id) == 0
    assert heard == ["create", "start", "die", "destroy"]


def test_unknown_mount_type_is_refused_and_a_plugin_can_add_one(
    rt: Runtime, tmp_path: Path
) -> None:
    from cargohold.core import InvalidArgument, hookimpl
    from cargohold.core.api.container_mounts import MountSpec, PreparedMount

    spec = MountSpec("scratch", "", "/scratch")
    with pytest.raises(InvalidArgument, match="mount type 'scratch' is not known"):
        rt.containers.create(IMAGE, ["true"], mounts=[spec])
    released: list[str] = []

    class Scratch:
        @hookimpl
        def cargohold_mount_types(self) -> list[str]:
            return ["scratch"]

        @hookimpl
        def cargohold_attach_mount(self, spec: MountSpec) -> list[MountSpec] | None:
            return [spec] if spec.type == "scratch" else None

        @hookimpl
        def cargohold_prepare_mount(self, spec: MountSpec) -> PreparedMount | None:
            if spec.type != "scratch":
                return None
            (tmp_path / "hello").write_text("from a plugin\n")
            return PreparedMount(spec.target, str(tmp_path), readonly=True)

        @hookimpl
        def cargohold_release_mount(self, spec: MountSpec) -> bool | None:
            if spec.type != "scratch":
                return None
            released.append(spec.target)
            return True

    rt.plugin_manager.register(Scratch())
    code, out, _ = run(rt, "cat", "/scratch/hello", mounts=[spec])
    assert (code, out) == (0, "from a plugin\n")
    assert released == ["/scratch"]


def test_mounts_are_parsed_from_docker_syntax(rt: Runtime, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("bound\n")
    specs = parse_all(volumes=[f"{host}:/h:ro", "named1:/n"], tmpfs=["/t:size=1m"], mounts=[])
    code, out, err = run(
        rt,
        "sh",
        "-c",
        "cat /h/in; touch /h/x 2>&1 | grep -c Read-only; echo v > /n/f; "
        "grep ' /t ' /proc/mounts | cut -d' ' -f3,4",
        mounts=specs,
    )
    assert code == 0, err
    assert out.splitlines() == ["bound", "1", "tmpfs rw,nosuid,nodev,relatime,size=1024k"]
    assert not (host / "x").exists()
    volume = rt.volumes.get("named1")
    assert (Path(volume.mountpoint) / "f").read_text() == "v\n"


def test_a_restarted_container_keeps_its_layer_and_log(rt: Runtime) -> None:
    service = rt.containers
    container = service.create(IMAGE, ["sh", "-c", "echo run >> /count; wc -l < /count"])
    assert service.supervise(container.id) == 0
    service.start(container.id)
    assert service.wait(container.id) == 0
    outputs = [d for s, d in service.logs(container.id) if s == "stdout"]
    assert outputs == [b"1\n", b"2\n"]  # the container's own changes survive a stop


def test_detached_run_with_rm_removes_itself(rt: Runtime) -> None:
    done = cli(rt.state_dir, "run", "-d", "--rm", "-v", "/anon", IMAGE, "sh", "-c", "sleep 0.2")
    assert done.returncode == 0 and len(done.stdout.strip()) == 64
    deadline = time.monotonic() + 10
    while rt.containers.find(done.stdout.strip()) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rt.volumes.list() == []  # its anonymous volume went with it
