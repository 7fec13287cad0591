"""The supervisor: the one process that runs a container from start to exit.

It prepares the mounts (``cargohold_prepare_mount``), spawns the process in
its namespaces (`runner`), copies its output into the json-file log, feeds
its stdin (``-i``) or its pseudo-terminal (``-t``), records the exit code,
releases the mounts and, for ``--rm``, removes the container. It is the
foreground ``run`` itself (``attach``: our own stdio), or a detached shim
(`start_detached`: ``python -m cargohold.core.shim``, its own session, so
it outlives whoever started it). A detached supervisor of a container with
``-i`` or ``-t`` serves stdin and window sizes on an abstract unix socket
(`attach_address`), which the Engine-API daemon uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import termios
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cargohold.core.api.clock import utc_now
from cargohold.core.api.container_mounts import MountSpec, PreparedMount
from cargohold.core.api.errors import CargoholdError, Conflict
from cargohold.core.containers import logs, procfs, runner, signals
from cargohold.core.containers.etcfiles import etc_files
from cargohold.core.containers.records import Container, ContainerState, StartFailed
from cargohold.core.kernel.snapshot_mounts import mount_all

if TYPE_CHECKING:
    from cargohold.core.api.snapshots import SnapshotMount
    from cargohold.core.containers.service import ContainerService

#: ``launcher(state_dir, container_id, ready_fd)`` starts a detached supervisor that
#: writes ``ok\n`` (or ``CODE\nmessage``) on ``ready_fd`` and closes it.
Launcher = Callable[[str, str, int], None]


def attach_address(container_id: str) -> bytes:
    """The abstract socket a detached supervisor serves stdin and resizes on."""
    return b"\0cargohold/attach/" + container_id.encode()


def set_window(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def shim_launcher(state_dir: str, container_id: str, ready_fd: int) -> None:
    """The default launcher: a fresh interpreter running `cargohold.core.shim`."""
    import subprocess

    log_path = os.path.join(state_dir, "containers", container_id, "shim.log")
    with open(log_path, "ab") as shim_log:
        subprocess.Popen(
            [sys.executable, "-m", "cargohold.core.shim", state_dir, container_id, str(ready_fd)],
            stdin=subprocess.DEVNULL,
            stdout=shim_log,
            stderr=shim_log,
            pass_fds=(ready_fd,),
            start_new_session=True,
        )


@dataclass
class _Stdio:
    """The container's end and ours of its stdio: pipes, or a pseudo-terminal."""

    child_in: int | None  # None: /dev/null
    child_out: int
    child_err: int
    stdin: int | None  # where we write what the container reads
    streams: dict[int, str]  # what we read -> log stream
    master: int | None = None  # -t: the terminal's master side

    @classmethod
    def open(cls, container: Container) -> _Stdio:
        if container.tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            return cls(slave, slave, slave, master, {master: "stdout"}, master)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        child_in = stdin = None
        if container.stdin_open:
            child_in, stdin = os.pipe2(os.O_CLOEXEC)
        return cls(child_in, out_w, err_w, stdin, {out_r: "stdout", err_r: "stderr"})

    def close_child_ends(self) -> None:
        for fd in {self.child_in, self.child_out, self.child_err} - {None}:
            assert fd is not None
            os.close(fd)

    def close_stdin(self) -> None:
        """EOF for the container (not with a terminal: there it is a typed ^D)."""
        if self.stdin is not None and self.master is None:
            with contextlib.suppress(OSError):
                os.close(self.stdin)
            self.stdin = None

    def close(self) -> None:
        self.close_stdin()
        for fd in self.streams:
            with contextlib.suppress(OSError):
                os.close(fd)


class Supervisor:
    """Start and supervise the containers of one `ContainerService`."""

    def __init__(self, service: ContainerService) -> None:
        self.service = service
        #: how `start_detached` starts a shim; the daemon installs a warm one
        self.launcher: Launcher = shim_launcher

    def start_detached(self, container: Container) -> Container:
        """Start a created or exited container under a detached supervisor (shim)."""
        if container.state.running:
            return container
        read_end, write_end = os.pipe()
        try:
            self.launcher(str(self.service.state_dir), container.id, write_end)
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            answer = ready.read().decode(errors="replace")
        status, _, message = answer.partition("\n")
        if status != "ok":
            code = int(status) if status.isdigit() else runner.EXIT_RUNTIME
            raise StartFailed(code, message or "the container's supervisor died while starting")
        return self.service.get(container.id)

    def supervise(
        self,
        container: Container,
        *,
        attach: bool = False,
        on_started: Callable[[Container], None] | None = None,
    ) -> int:
        """Run ``container`` to its end in this process; return its exit code."""
        directory = self.service.directory(container)
        # one supervisor per container, even when two starts race: an flock held for life
        lock = os.open(directory / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise Conflict(f"container {container.id} is already running") from None
        try:
            return self._run(self.service.get(container.id), attach, on_started)
        finally:
            os.close(lock)

    def _prepare(self, container: Container) -> tuple[list[MountSpec], list[PreparedMount]]:
        prepared: list[MountSpec] = []
        plan: list[PreparedMount] = []
        for spec in container.mounts:
            answer = self.service.hook.cargohold_prepare_mount(
                spec=spec, container=container, runtime=self.service.host
            )
            if answer is None:
                raise CargoholdError(f"no plugin prepared the {spec.type} mount {spec.target}")
            prepared.append(spec)
            plan.append(answer)
        return prepared, plan

    def _run(
        self,
        container: Container,
        attach: bool,
        on_started: Callable[[Container], None] | None,
    ) -> int:
        service = self.service
        if container.state.running:
            raise Conflict(f"container {container.id} is already running")
        prepared: list[MountSpec] = []
        try:
            prepared, plan = self._prepare(container)
            root_mounts = self._root_mounts(container)
            plan = etc_files(container, service.directory(container), plan) + plan
        except BaseException as err:
            service.release_mounts(container, prepared)
            self._record_failure(container, runner.EXIT_RUNTIME, str(err))
            raise
        with contextlib.ExitStack() as stack:
            stdio = _Stdio.open(container)
            stack.callback(stdio.close)
            logfile = stack.enter_context(open(service.log_path(container), "ab", buffering=0))
            proc_spec = runner.ProcessSpec(
                args=container.args,
                mount_rootfs=lambda target: _mount_root(root_mounts, target),
                rootfs_dir=service.directory(container) / "rootfs",
                env=container.env,
                workdir=container.workdir,
                user=container.user,
                hostname=container.hostname,
                network=container.network,
                readonly=container.readonly,
                mounts=plan,
                tty=container.tty,
            )
            if attach:
                from cargohold.core.containers import attached
            if attach and stdio.master is not None:
                stack.enter_context(attached.terminal(stdio.master))
            if not attach and stdio.stdin is not None:  # listening before the state says running
                stack.enter_context(_serve_attach(container.id, stdio))
            try:
                pid = runner.spawn(proc_spec, stdio.child_out, stdio.child_err, stdio.child_in)
            except runner.StartError as err:
                service.release_mounts(container, prepared)
                self._record_failure(container, err.exit_code, str(err))
                raise StartFailed(err.exit_code, str(err)) from None
            finally:
                stdio.close_child_ends()
            me = os.getpid()
            state = ContainerState(
                status="running",
                pid=pid,
                pid_start=procfs.start_time(pid),
                supervisor=me,
                supervisor_start=procfs.start_time(me),
                started_at=utc_now("microseconds"),
            )
            service.store.set_state(container.id, state)
            container = replace(container, state=state)
            service.emit("start", container)
            if attach:
                stack.enter_context(signals.forwarded(pid))
                if stdio.stdin is not None:
                    attached.copy_stdin(stdio.stdin, stdio.close_stdin)
            if on_started is not None:
                on_started(container)
            logs.pump(stdio.streams, logfile, echo=_echo if attach else None)
            _, status = os.waitpid(pid, 0)
        code = runner.exit_code_of(status)
        # mounts first: once the state says exited (what stop waits for), volumes are released
        service.release_mounts(container, prepared)
        state = replace(state, status="exited", exit_code=code, finished_at=utc_now("microseconds"))
        service.store.set_state(container.id, state)
        container = replace(container, state=state)
        service.emit("die", container, exitCode=str(code))
        if container.autoremove:
            service.remove(container.id, volumes=True)
        return code

    def _root_mounts(self, container: Container) -> list[SnapshotMount]:
        rootfs = container.rootfs
        if rootfs.snapshotter is None or rootfs.key is None:
            return list(rootfs.mounts)
        return list(self.service.snapshotters.get(rootfs.snapshotter).mounts(rootfs.key))

    def _record_failure(self, container: Container, code: int, message: str) -> None:
        state = ContainerState(
            status="exited" if container.state.started_at else "created",
            exit_code=code,
            error=message,
            started_at=container.state.started_at,
            finished_at=utc_now("microseconds"),
        )
        self.service.store.set_state(container.id, state)
        if container.autoremove:
            self.service.remove(container.id, volumes=True)


def _mount_root(root_mounts: list[SnapshotMount], target: Path) -> None:
    mount_all(root_mounts, target)  # in the container's child: imported before the fork


def _echo(stream: str, chunk: bytes) -> None:
    os.write(1 if stream == "stdout" else 2, chunk)


@contextlib.contextmanager
def _serve_attach(container_id: str, stdio: _Stdio) -> Iterator[None]:
    """Serve ``stdin\\n<bytes>`` and ``resize ROWS COLS\\n`` to our own user, while inside."""
    import socket
    import threading

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    server.bind(attach_address(container_id))
    server.listen(8)
    me = os.getuid()

    def handle(conn: socket.socket) -> None:
        with conn:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if struct.unpack("3i", creds)[1] not in (0, me):
                return
            reader = conn.makefile("rb", buffering=0)
            command = reader.readline().decode(errors="replace").split()
            if command[:1] == ["resize"] and len(command) == 3 and stdio.master is not None:
                with contextlib.suppress(OSError, ValueError):
                    set_window(stdio.master, int(command[1]), int(command[2]))
                return
            if command[:1] != ["stdin"]:
                return
            while stdio.stdin is not None:
                chunk = conn.recv(65536)
                if not chunk:
                    stdio.close_stdin()  # as Docker's StdinOnce: the first attach's EOF
                    return
                try:
                    os.write(stdio.stdin, chunk)
                except OSError:
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
