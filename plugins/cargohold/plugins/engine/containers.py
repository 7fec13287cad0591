"""``/containers`` routes: create, start, stop, kill, restart, wait, logs, attach, ps, rm, commit.

Containers the daemon starts run under detached supervisors (shims), so they
outlive the daemon; every route reads the container store, which is how a
restarted daemon finds running containers again. ``attach`` hijacks the
connection: output follows the container's log from where it stood, stdin
goes to the supervisor's attach socket.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from cargohold.core.api.container_mounts import VOLUME, MountSpec
from cargohold.core.api.errors import Conflict, InvalidArgument, NotFound
from cargohold.core.containers import logs, signals
from cargohold.core.containers.records import Container, StartFailed
from cargohold.core.containers.supervisor import attach_address
from cargohold.plugins import shapes
from cargohold.plugins.engine import convert, streams
from cargohold.plugins.engine.wire import answer, api_version, filters, flag
from cargohold.plugins.http.bodies import json_kind, parse_json_object, string_map

if TYPE_CHECKING:
    from cargohold.core.containers.service import ContainerService
    from cargohold.core.runtime import Runtime

CONTAINER_FILTERS = frozenset({"id", "name", "status", "label"})
#: network modes that mean "the default" to the docker CLI; cargohold's default is none
_DEFAULT_NETWORKS = ("", "default", "bridge", "none")


def register(app: Flask, rt: Runtime) -> None:
    def service() -> ContainerService:
        return rt.containers

    def lookup() -> shapes.VolumeLookup:
        return shapes.volume_lookup(rt.volumes)

    @app.route("/containers/create", methods=["POST"])
    def container_create() -> Response:
        body = parse_json_object(request.get_data(cache=False))
        created = service().create(**create_arguments(body, request.args.get("name") or None))
        return answer({"Id": created.id, "Warnings": []}, 201)

    @app.route("/containers/json", methods=["GET"])
    def container_list() -> Response:
        chosen = filters(CONTAINER_FILTERS)
        svc, find = service(), lookup()
        summaries = [shapes.container_summary(c, find) for c in svc.list(all=True)]
        show_all = flag("all") or "status" in chosen
        listed = [
            s for s in summaries if (show_all or s["State"] == "running") and _matches(s, chosen)
        ]
        limit = request.args.get("limit", "")
        if limit.lstrip("-").isdigit() and int(limit) > 0:
            listed = listed[: int(limit)]
        return answer(listed)

    @app.route("/containers/<ref>/json", methods=["GET"])
    def container_inspect(ref: str) -> Response:
        svc = service()
        found = svc.get(ref)
        return answer(shapes.container_inspect(found, lookup(), str(svc.log_path(found))))

    @app.route("/containers/<ref>/start", methods=["POST"])
    def container_start(ref: str) -> Response:
        svc = service()
        if svc.get(ref).state.running:
            return Response(status=304)
        try:
            svc.start(ref)
        except StartFailed as err:
            # the docker CLI tells 126 and 127 from these words, as in runc's messages
            message = f"failed to create task for container: {_go_words(str(err))}"
            raise InvalidArgument(message) from None
        return Response(status=204)

    @app.route("/containers/<ref>/stop", methods=["POST"])
    def container_stop(ref: str) -> Response:
        svc = service()
        found = svc.get(ref)
        if not found.state.running:
            return Response(status=304)
        svc.stop(found.id, _timeout(), _signal("signal", "TERM"))
        return Response(status=204)

    @app.route("/containers/<ref>/kill", methods=["POST"])
    def container_kill(ref: str) -> Response:
        number = _signal("signal", "KILL")  # checked first, as dockerd does
        svc = service()
        found = svc.get(ref)
        if not found.state.running:
            raise Conflict(f"Cannot kill container: {ref}: container {found.id} is not running")
        svc.kill(found.id, number)
        return Response(status=204)

    @app.route("/containers/<ref>/restart", methods=["POST"])
    def container_restart(ref: str) -> Response:
        svc = service()
        found = svc.get(ref)
        svc.stop(found.id, _timeout(), _signal("signal", "TERM"))
        svc.start(found.id)
        return Response(status=204)

    @app.route("/containers/<ref>/wait", methods=["POST"])
    def container_wait(ref: str) -> Response:
        svc = service()
        found = svc.get(ref)
        condition = request.args.get("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")

        def result() -> Iterator[bytes]:
            yield b""  # the answer's head goes out now: the CLI starts the container after it
            code = _wait(svc, found, condition)
            yield (json.dumps(convert.wait_answer(code)) + "\n").encode()

        return Response(result(), 200, content_type="application/json")

    @app.route("/containers/<ref>", methods=["DELETE"])
    def container_remove(ref: str) -> Response:
        service().remove(ref, force=flag("force"), volumes=flag("v"))
        return Response(status=204)

    @app.route("/containers/<ref>/logs", methods=["GET"])
    def container_logs(ref: str) -> Response:
        svc = service()
        found = svc.get(ref)
        wanted = {s for s in ("stdout", "stderr") if flag(s)}
        if not wanted:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        path = svc.log_path(found)
        stamped = flag("timestamps")
        records = [r for r in logs.read_timed(path) if r[0] in wanted]
        tail = request.args.get("tail", "all")
        if tail.isdigit():
            records = records[len(records) - int(tail) :] if int(tail) else []
        follow = flag("follow")
        offset = logs.size(path)

        def shaped(found_records: Iterable[tuple[str, bytes, str]]) -> Iterator[tuple[str, bytes]]:
            for stream, data, at in found_records:
                if stream in wanted:
                    yield stream, (at.encode() + b" " + data) if stamped else data

        def body() -> Iterator[bytes]:
            yield from streams.encode(shaped(records), tty=found.tty)
            if follow:
                more = logs.read_timed(path, follow=lambda: _running(svc, found.id), offset=offset)
                yield from streams.encode(shaped(more), tty=found.tty)

        kind = streams.content_type(found.tty, api_version())
        return Response(body(), 200, content_type=kind)

    @app.route("/containers/<ref>/attach", methods=["POST"])
    def container_attach(ref: str) -> Response:
        svc = service()
        found = svc.get(ref)
        replay = flag("logs")
        with_stdin = flag("stdin") and found.stdin_open
        wanted = {s for s in ("stdout", "stderr") if flag(s)}
        hijacked = request.environ["cargohold.hijack"](
            [("Content-Type", streams.content_type(found.tty, api_version()))]
        )
        _attach(svc, found, hijacked, wanted, with_stdin, replay)
        return Response(status=200)

    @app.route("/containers/<ref>/resize", methods=["POST"])
    def container_resize(ref: str) -> Response:
        found = service().get(ref)
        rows, cols = _size()
        if found.state.running and found.tty:
            _to_supervisor(found.id, f"resize {rows} {cols}\n".encode())
        return Response(status=200)

    @app.route("/commit", methods=["POST"])
    def commit() -> Response:
        ref = request.args.get("container", "")
        repo, tag = request.args.get("repo", ""), request.args.get("tag", "")
        image = service().commit(
            ref,
            f"{repo}:{tag}" if repo and tag else (repo or None),
            message=request.args.get("comment", ""),
            author=request.args.get("author", ""),
            changes=request.args.getlist("changes"),
        )
        return answer({"Id": image.id}, 201)


# -- create ------------------------------------------------------------------------


def create_arguments(body: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    """`ContainerService.create`'s arguments from the body of ``POST /containers/create``."""
    from cargohold.core.api.container_mounts import parse_all

    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidArgument("config.Image is required: the image to create the container from")
    host = body.get("HostConfig")
    host = {} if host is None else host
    if not isinstance(host, Mapping):
        raise InvalidArgument(f"HostConfig must be an object, not a JSON {json_kind(host)}")
    binds = _strings(host.get("Binds"), "HostConfig.Binds")
    volumes = body.get("Volumes") or {}
    if not isinstance(volumes, Mapping):
        raise InvalidArgument("Volumes must be an object of paths")
    bound = {b.split(":")[1] if ":" in b else b for b in binds}
    anonymous = [path for path in volumes if path not in bound]
    tmpfs = string_map(host.get("Tmpfs"), "HostConfig.Tmpfs")
    mounts = [_mount_flag(m) for m in _objects(host.get("Mounts"), "HostConfig.Mounts")]
    specs = parse_all(
        [*binds, *anonymous],
        mounts,
        [f"{path}:{opts}" if opts else path for path, opts in tmpfs.items()],
        _strings(host.get("VolumesFrom"), "HostConfig.VolumesFrom"),
    )
    driver = _string(host.get("VolumeDriver"), "HostConfig.VolumeDriver")
    if driver:  # --volume-driver: for the volumes of -v and the image that name none
        specs = [_with_driver(spec, driver) for spec in specs]
    network = host.get("NetworkMode") or ""
    if not isinstance(network, str):
        raise InvalidArgument("HostConfig.NetworkMode must be a string")
    if network not in (*_DEFAULT_NETWORKS, "host"):
        raise NotFound(f"network {network} not found")
    entrypoint = body.get("Entrypoint")
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    entrypoint = None if entrypoint is None else _strings(entrypoint, "Entrypoint")
    return {
        "image": image,
        "command": _strings(body.get("Cmd"), "Cmd"),
        "name": name,
        "mounts": specs,
        "env": _strings(body.get("Env"), "Env"),
        "workdir": _string(body.get("WorkingDir"), "WorkingDir") or None,
        "user": _string(body.get("User"), "User") or None,
        "entrypoint": entrypoint,
        "hostname": _string(body.get("Hostname"), "Hostname") or None,
        "network": "host" if network == "host" else "none",
        "readonly": bool(host.get("ReadonlyRootfs")),
        "autoremove": bool(host.get("AutoRemove")),
        "labels": string_map(body.get("Labels"), "Labels"),
        "stdin_open": bool(body.get("OpenStdin")),
        "tty": bool(body.get("Tty")),
    }


def _with_driver(spec: MountSpec, driver: str) -> MountSpec:
    if spec.type != VOLUME or "driver" in spec.options:
        return spec
    return replace(spec, options={**spec.options, "driver": driver})


def _mount_flag(m: Mapping[str, Any]) -> str:
    """One ``HostConfig.Mounts`` entry as the ``--mount`` text the core parses."""
    fields = [f"type={m.get('Type') or 'volume'}", f"target={m.get('Target', '')}"]
    if m.get("Source"):
        fields.append(f"source={m['Source']}")
    if m.get("ReadOnly"):
        fields.append("readonly")
    volume = m.get("VolumeOptions") or {}
    if volume.get("NoCopy"):
        fields.append("volume-nocopy")
    driver = volume.get("DriverConfig") or {}
    if driver.get("Name"):
        fields.append(f"volume-driver={driver['Name']}")
    fields += [f"volume-opt={k}={v}" for k, v in (driver.get("Options") or {}).items()]
    fields += [f"volume-label={k}={v}" for k, v in (volume.get("Labels") or {}).items()]
    bind = m.get("BindOptions") or {}
    if bind.get("Propagation"):
        fields.append(f"bind-propagation={bind['Propagation']}")
    if bind.get("NonRecursive"):
        fields.append("bind-nonrecursive")
    tmpfs = m.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        fields.append(f"tmpfs-size={tmpfs['SizeBytes']}")
    if tmpfs.get("Mode"):
        fields.append(f"tmpfs-mode={tmpfs['Mode']:o}")
    out = io.StringIO()
    csv.writer(out).writerow(fields)
    return out.getvalue().strip("\r\n")


def _strings(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what} must be an array of strings, not a JSON {json_kind(value)}")
    return list(value)


def _string(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, not a JSON {json_kind(value)}")
    return value


def _objects(value: object, what: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidArgument(f"{what} must be an array of objects")
    return list(value)


# -- helpers -------------------------------------------------------------------------


def _timeout() -> float:
    text = request.args.get("t") or request.args.get("timeout") or ""
    if not text:
        return 10
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(f"invalid stop timeout {text!r}: give seconds") from None


def _signal(param: str, default: str) -> int:
    try:
        return signals.number(request.args.get(param) or default)
    except ValueError as err:
        raise InvalidArgument(str(err)) from None


def _size() -> tuple[int, int]:
    try:
        return int(request.args.get("h", "0")), int(request.args.get("w", "0"))
    except ValueError:
        raise InvalidArgument("h and w must be numbers") from None


def _go_words(message: str) -> str:
    """Error text as Go prints errno names, which the docker CLI looks for."""
    return message.replace("Permission denied", "permission denied").replace(
        "Is a directory", "is a directory"
    )


def _running(svc: ContainerService, container_id: str) -> bool:
    current = svc.find(container_id)
    return current is not None and current.state.running


def _wait(svc: ContainerService, container: Container, condition: str) -> int:
    """Block until ``condition`` holds; the exit code then."""
    before = container.state.finished_at
    delay = 0.002
    while True:
        current = svc.find(container.id)
        if current is None:
            code = svc.store.removed_exit_code(container.id)
            return container.state.exit_code if code is None else code
        st = current.state
        if condition == "not-running" and not st.running:
            return st.exit_code
        if condition == "next-exit" and not st.running and st.finished_at != before:
            return st.exit_code
        container = current
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _matches(summary: Mapping[str, Any], chosen: Mapping[str, Any]) -> bool:
    if "id" in chosen and not any(summary["Id"].startswith(i) for i in chosen["id"]):
        return False
    names = [n.lstrip("/") for n in summary["Names"]]
    if "name" in chosen and not any(f in n for f in chosen["name"] for n in names):
        return False
    if "status" in chosen and summary["State"] not in chosen["status"]:
        return False
    labels: Mapping[str, str] = summary["Labels"]
    for expr in chosen.get("label", ()):
        key, sep, value = expr.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _to_supervisor(container_id: str, message: bytes) -> socket.socket | None:
    """Connect to a detached supervisor's attach socket and send ``message``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(attach_address(container_id))
        sock.sendall(message)
    except OSError:
        sock.close()
        return None
    return sock


def _attach(
    svc: ContainerService,
    container: Container,
    hijacked: Any,
    wanted: set[str],
    with_stdin: bool,
    replay: bool,
) -> None:
    """Stream the container's output to the client until it has run and exited."""
    sock: socket.socket = hijacked.sock
    before = container.state.finished_at
    path = svc.log_path(container)
    offset = 0 if replay else logs.size(path)

    def more() -> bool:
        current = svc.find(container.id)
        if current is None:
            return False
        return current.state.running or current.state.finished_at == before

    supervisor: list[socket.socket] = []

    def write(chunk: bytes) -> None:
        if not supervisor:
            while not _running(svc, container.id):
                if not more():
                    raise OSError("the container is not running")
                time.sleep(0.005)
            conn = _to_supervisor(container.id, b"stdin\n")
            if conn is None:
                raise OSError("the container's supervisor takes no input")
            supervisor.append(conn)
        supervisor[0].sendall(chunk)

    def stdin_done() -> None:
        if supervisor:
            with contextlib.suppress(OSError):
                supervisor[0].close()

    # (the docker CLI half-closes the connection when its input ends, or at once
    # without -i: EOF here is the end of stdin, never the client leaving)
    if with_stdin:
        streams.relay_input(sock, hijacked.pending, write, stdin_done)
    records = logs.read(path, follow=more, offset=offset)
    streams.send_all(
        sock, streams.encode((r for r in records if r[0] in wanted), tty=container.tty)
    )
    streams.finish(sock)
