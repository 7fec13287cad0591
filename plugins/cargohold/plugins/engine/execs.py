"""``exec`` routes: ``POST /containers/{id}/exec``, ``/exec/{id}/start|resize|json``.

An exec instance lives in the daemon's memory, as in dockerd. Its process is
a child of the daemon (`cargohold.core.containers.execute`); ``start``
hijacks the connection and streams the process's output (framed, or raw with
a TTY) while feeding it the client's input; ``json`` gives its exit code,
which the docker CLI exits with.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from cargohold.core.api.errors import Conflict, InvalidArgument, NotFound
from cargohold.core.containers import execute, runner
from cargohold.core.containers.supervisor import set_window
from cargohold.plugins.engine import convert, streams
from cargohold.plugins.engine.containers import _size, _strings
from cargohold.plugins.engine.wire import answer, api_version
from cargohold.plugins.http.bodies import parse_json_object

if TYPE_CHECKING:
    from cargohold.core.runtime import Runtime


#: runc's words, which the docker CLI shows
_EXEC_FAILED = "OCI runtime exec failed: exec failed: unable to start container process"


@dataclass
class ExecRecord:
    id: str
    container_id: str
    args: list[str]
    env: list[str]
    user: str | None
    workdir: str | None
    tty: bool
    stdin: bool
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    master: int | None = None
    started: threading.Event = field(default_factory=threading.Event)


def register(app: Flask, rt: Runtime) -> None:
    records: dict[str, ExecRecord] = {}
    lock = threading.Lock()

    def record(exec_id: str) -> ExecRecord:
        with lock:
            found = records.get(exec_id)
        if found is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return found

    @app.route("/containers/<ref>/exec", methods=["POST"])
    def exec_create(ref: str) -> Response:
        container = rt.containers.get(ref)
        body = parse_json_object(request.get_data(cache=False))
        args = _strings(body.get("Cmd"), "Cmd")
        if not args:
            raise InvalidArgument("No exec command specified")
        if not container.state.running:
            raise Conflict(f"container {container.id} is not running")
        made = ExecRecord(
            id=secrets.token_hex(32),
            container_id=container.id,
            args=args,
            env=_strings(body.get("Env"), "Env"),
            user=body.get("User") or None,
            workdir=body.get("WorkingDir") or None,
            tty=bool(body.get("Tty")),
            stdin=bool(body.get("AttachStdin")),
        )
        with lock:
            records[made.id] = made
        return answer({"Id": made.id}, 201)

    @app.route("/exec/<exec_id>/json", methods=["GET"])
    def exec_inspect(exec_id: str) -> Response:
        return answer(convert.exec_inspect(record(exec_id)))

    @app.route("/exec/<exec_id>/resize", methods=["POST"])
    def exec_resize(exec_id: str) -> Response:
        found = record(exec_id)
        rows, cols = _size()
        found.started.wait(5)
        if found.master is not None:
            with contextlib.suppress(OSError):
                set_window(found.master, rows, cols)
        return Response(status=200)

    @app.route("/exec/<exec_id>/start", methods=["POST"])
    def exec_start(exec_id: str) -> Response:
        found = record(exec_id)
        body = parse_json_object(request.get_data(cache=False))
        if found.running or found.exit_code is not None:
            raise Conflict(f"exec instance {exec_id} has already been started")
        container = rt.containers.get(found.container_id)
        found.running = True
        hijacked = None
        if not body.get("Detach"):  # as dockerd: take the connection first, report on it
            hijacked = request.environ["cargohold.hijack"](
                [("Content-Type", streams.content_type(found.tty, api_version()))]
            )
        try:
            ours = _spawn(container, found)
        except (runner.StartError, Conflict) as err:
            found.running = False
            found.exit_code = getattr(err, "exit_code", runner.EXIT_CANNOT_EXECUTE)
            found.started.set()
            message = f"{_EXEC_FAILED}: {err}: unknown"
            if hijacked is None:
                raise InvalidArgument(message) from None
            text = (message + "\r\n").encode()
            streams.send_all(hijacked.sock, [text if found.tty else streams.frame("stdout", text)])
            streams.finish(hijacked.sock)
            return Response(status=200)
        if hijacked is None:
            threading.Thread(target=_reap, args=(found, ours), daemon=True).start()
            return Response(status=204)
        _stream(found, hijacked, ours)
        return Response(status=200)


@dataclass
class _Ours:
    """Our ends of an exec process's stdio."""

    stdin: int | None
    reads: dict[int, str]


def _spawn(container: Any, found: ExecRecord) -> _Ours:
    """Start the exec process; our ends of its stdio (closed again if it cannot start)."""
    stdio: tuple[int | None, int, int]
    if found.tty:
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        found.master = master
        child = [slave]
        stdio = (slave, slave, slave)
        ours = _Ours(master if found.stdin else None, {master: "stdout"})
    else:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r = in_w = None
        if found.stdin:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
        child = [fd for fd in (in_r, out_w, err_w) if fd is not None]
        stdio = (in_r, out_w, err_w)
        ours = _Ours(in_w, {out_r: "stdout", err_r: "stderr"})
    spec = execute.ExecSpec(found.args, found.env, found.user, found.workdir, found.tty)
    try:
        found.pid = execute.spawn(container, spec, *stdio)
    except BaseException:
        for fd in (*ours.reads, *([ours.stdin] if ours.stdin is not None else [])):
            with contextlib.suppress(OSError):
                os.close(fd)
        found.master = None
        raise
    finally:
        for fd in child:
            with contextlib.suppress(OSError):
                os.close(fd)
    found.started.set()
    return ours


def _reap(found: ExecRecord, ours: _Ours) -> None:
    """Detached: drain the output, wait, record the code."""
    for fd in ours.reads:
        threading.Thread(target=_drain, args=(fd,), daemon=True).start()
    _, status = os.waitpid(found.pid, 0)
    found.exit_code = runner.exit_code_of(status)
    found.running = False


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass
    with contextlib.suppress(OSError):
        os.close(fd)


def _stream(found: ExecRecord, hijacked: Any, ours: _Ours) -> None:
    import selectors

    sock = hijacked.sock

    def write(chunk: bytes) -> None:
        if ours.stdin is not None:
            os.write(ours.stdin, chunk)

    def stdin_done() -> None:
        if ours.stdin is not None and not found.tty:
            with contextlib.suppress(OSError):
                os.close(ours.stdin)
            ours.stdin = None

    if found.stdin:
        streams.relay_input(sock, hijacked.pending, write, stdin_done)
    with selectors.DefaultSelector() as selector:
        for fd in ours.reads:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(ours.reads)
        client = True
        while open_fds:
            for key, _ in selector.select():
                fd = int(key.fd)
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
                    continue
                if client:
                    data = chunk if found.tty else streams.frame(ours.reads[fd], chunk)
                    client = streams.send_all(sock, [data])
    _, status = os.waitpid(found.pid, 0)
    found.exit_code = runner.exit_code_of(status)
    found.running = False
    if found.master is not None:
        found.master = None
    if ours.stdin is not None and not found.tty:
        with contextlib.suppress(OSError):
            os.close(ours.stdin)
    streams.finish(sock)
