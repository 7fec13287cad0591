"""Containers: records, lifecycle and supervision.

A container is a row in ``<state>/containers.db`` and a directory
``<state>/containers/<id>/`` (its log and the empty directory its root is
mounted on, inside its own mount namespace). Every storage decision goes
through hooks: the root filesystem (`cargohold_rootfs`) and each mount
(``cargohold_attach_mount`` at create, ``..._prepare_mount`` at start,
``..._release_mount`` at stop, ``..._detach_mount`` at remove).

While a container runs, one process supervises it: the foreground ``run``
itself, or a detached shim (``python -m cargohold.core.containers.service``) for
``-d`` and ``start``. The supervisor spawns the process, copies its stdout and
stderr into the log, records its exit code, releases its mounts and, for
``--rm``, removes it. Other commands only read the row and send signals.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cargohold.core.api.container_mounts import VOLUME, VOLUMES_FROM, MountSpec, PreparedMount
from cargohold.core.api.errors import CargoholdError, Conflict, InvalidArgument, NotFound
from cargohold.core.containers import runner
from cargohold.core.images.store import Image
from cargohold.core.snapshots.service import Mount, mounted, new_key
from cargohold.core.state.database import Database
from cargohold.core.volumes.service import ANONYMOUS_LABEL

if TYPE_CHECKING:
    from cargohold.core.runtime import Runtime

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_HOSTNAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}")
STOP_TIMEOUT = 10
#: Label on the snapshot holding a container's root filesystem: its id.
CONTAINER_LABEL = "cargohold.container"
EXIT_SUPERVISOR_LOST = 255


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Rootfs:
    """A container's root filesystem, as the `cargohold_rootfs` plugin made it.

    With a ``snapshotter``, ``key`` names the container's active snapshot:
    its mounts are asked for at each start and it is removed with the
    container. Without one, ``mounts`` are used as they are and nothing is
    removed.
    """

    snapshotter: str | None
    key: str | None = None
    mounts: tuple[Mount, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "Snapshotter": self.snapshotter,
            "Key": self.key,
            "Mounts": [m.to_dict() for m in self.mounts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rootfs:
        mounts = tuple(
            Mount(m["Type"], m["Source"], tuple(m.get("Options", ()))) for m in data["Mounts"]
        )
        return cls(data.get("Snapshotter"), data.get("Key"), mounts)


@dataclass(frozen=True)
class ContainerState:
    """Docker's ``State``: ``created``, ``running``, ``exited``."""

    status: str = "created"
    pid: int = 0
    pid_start: int = 0  # /proc/<pid>/stat start time: a reused pid is never signalled
    supervisor: int = 0
    supervisor_start: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ""
    finished_at: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class Container:
    """What the core knows of one container; hooks receive it."""

    id: str
    name: str
    image: str  # as the user named it
    image_id: str
    created: str
    args: tuple[str, ...]  # what runs: entrypoint + command
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = "/"
    user: str = ""
    hostname: str = ""
    network: str = "none"
    readonly: bool = False
    autoremove: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[MountSpec, ...] = ()
    rootfs: Rootfs = Rootfs(None)
    state: ContainerState = ContainerState()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_row(self) -> str:
        data = asdict(self)
        data["mounts"] = [m.to_dict() for m in self.mounts]
        data["rootfs"] = self.rootfs.to_dict()
        del data["state"]
        return json.dumps(data)

    @classmethod
    def from_row(cls, data_text: str, state_text: str) -> Container:
        data = json.loads(data_text)
        for key in ("args", "entrypoint", "cmd", "env"):
            data[key] = tuple(data[key])
        data["mounts"] = tuple(MountSpec.from_dict(m) for m in data["mounts"])
        data["rootfs"] = Rootfs.from_dict(data["rootfs"])
        return cls(**data, state=ContainerState(**json.loads(state_text)))


@dataclass(frozen=True)
class ContainerEvent:
    """What `cargohold_container_event` hears."""

    action: str
    id: str
    name: str
    image: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time: str = field(default_factory=_now)


# -- persistence ---------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    state TEXT NOT NULL
)
"""


class ContainerStore:
    """Container rows in their own SQLite file (WAL), so container churn never
    contends with volume transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # state rows are rewritten often; WAL + NORMAL never corrupts, and a
        # power cut at worst loses the last state change, which is re-read from /proc
        self._db = Database(path, _SCHEMA, synchronous="NORMAL")

    def close(self) -> None:
        self._db.close()

    def insert(self, container: Container) -> None:
        try:
            with self._db.transaction() as db:
                db.execute(
                    "INSERT INTO containers (id, name, data, state) VALUES (?, ?, ?, ?)",
                    (
                        container.id,
                        container.name,
                        container.to_row(),
                        json.dumps(asdict(container.state)),
                    ),
                )
        except sqlite3.IntegrityError:
            raise _name_conflict(container.name, self.by_name(container.name)) from None

    def update(self, container: Container) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE containers SET data = ?, state = ? WHERE id = ?",
                (container.to_row(), json.dumps(asdict(container.state)), container.id),
            )

    def set_state(self, container_id: str, state: ContainerState) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE containers SET state = ? WHERE id = ?",
                (json.dumps(asdict(state)), container_id),
            )

    def delete(self, container_id: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    def get(self, container_id: str) -> Container | None:
        row = (
            self._db.connection()
            .execute("SELECT data, state FROM containers WHERE id = ?", (container_id,))
            .fetchone()
        )
        return Container.from_row(*row) if row else None

    def by_name(self, name: str) -> Container | None:
        row = self._db.connection().execute(
            "SELECT data, state FROM containers WHERE name = ?", (name,)
        )
        found = row.fetchone()
        return Container.from_row(*found) if found else None

    def ids_with_prefix(self, prefix: str) -> list[str]:
        rows = self._db.connection().execute(
            "SELECT id FROM containers WHERE id >= ? AND id < ? LIMIT 2", (prefix, prefix + "g")
        )
        return [r[0] for r in rows]

    def list(self) -> list[Container]:
        rows = self._db.connection().execute("SELECT data, state FROM containers").fetchall()
        containers = [Container.from_row(*r) for r in rows]
        return sorted(containers, key=lambda c: c.created, reverse=True)


def _name_conflict(name: str, holder: Container | None) -> Conflict:
    who = f"container {holder.id}" if holder else "another container"
    return Conflict(
        f'the container name "/{name}" is already in use by {who}: '
        "remove (or rename) that container to reuse the name"
    )


# -- process identity ------------------------------------------------------------


def _start_time(pid: int) -> int:
    """The kernel's start time of ``pid`` (0 if it is gone): pid + start time is unique."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return 0
    fields = text[text.rindex(b")") + 2 :].split()
    return 0 if fields[0] in (b"Z", b"X") else int(fields[19])  # a zombie has ended


def _alive(pid: int, start: int) -> bool:
    return pid > 0 and start != 0 and _start_time(pid) == start


# -- the service -----------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config a container uses."""

    id: str
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    volumes: tuple[str, ...] = ()


class ContainerService:
    """Create, start, stop, remove and inspect containers of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.hook = runtime.hook
        self.root = runtime.state_dir / "containers"
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.store = ContainerStore(runtime.state_dir / "containers.db")

    def close(self) -> None:
        self.store.close()

    # -- lookup ------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """A container by full id, name, or unique id prefix."""
        container = self.find(ref)
        if container is None:
            raise NotFound(f"no such container: {ref}")
        return container

    def find(self, ref: str) -> Container | None:
        if not isinstance(ref, str) or not ref or "\0" in ref:
            raise InvalidArgument("container reference is empty: give a name or an id")
        found = self.store.get(ref) or self.store.by_name(ref.lstrip("/"))
        if found is None and re.fullmatch(r"[0-9a-f]{1,63}", ref):
            ids = self.store.ids_with_prefix(ref)
            if len(ids) > 1:
                raise InvalidArgument(f"id prefix {ref} names several containers: give more of it")
            found = self.store.get(ids[0]) if ids else None
        return self._refresh(found) if found else None

    def list(self, *, all: bool = False) -> list[Container]:
        containers = [self._refresh(c) for c in self.store.list()]
        return containers if all else [c for c in containers if c.state.running]

    def _refresh(self, container: Container) -> Container:
        """A running container whose supervisor is gone (killed, crashed) has exited."""
        st = container.state
        if st.running and not _alive(st.supervisor, st.supervisor_start):
            if _alive(st.pid, st.pid_start):  # orphaned process: end it, nobody logs it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(st.pid, signal.SIGKILL)
            state = replace(
                st,
                status="exited",
                exit_code=EXIT_SUPERVISOR_LOST,
                error="the supervising process ended before the container",
                finished_at=_now(),
            )
            self.store.set_state(container.id, state)
            return replace(container, state=state)
        return container

    def directory(self, container: Container) -> Path:
        return self.root / container.id

    def log_path(self, container: Container) -> Path:
        return self.directory(container) / "container.log"

    # -- create ------------------------------------------------------------------

    def create(
        self,
        image: str,
        command: Sequence[str] = (),
        *,
        name: str | None = None,
        mounts: Sequence[MountSpec] = (),
        env: Sequence[str] = (),
        workdir: str | None = None,
        user: str | None = None,
        entrypoint: str | None = None,
        hostname: str | None = None,
        network: str = "none",
        readonly: bool = False,
        autoremove: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Container:
        """Create a container; on any failure nothing of it is left behind."""
        if name is not None:
            name = _check_name(name)
            if (holder := self.store.by_name(name)) is not None:
                raise _name_conflict(name, holder)
        if network not in ("none", "host"):
            raise InvalidArgument(f"network {network!r} is not supported: use none or host")
        if workdir is not None and workdir and not workdir.startswith("/"):
            raise InvalidArgument(f"working directory {workdir!r} must be an absolute path")
        if hostname is not None and not _HOSTNAME.fullmatch(hostname):
            raise InvalidArgument(
                f"invalid hostname {hostname!r}: letters, digits, '.' and '-', at most 63"
            )
        for text in (*command, *env, entrypoint or "", workdir or "", user or ""):
            if "\0" in text:
                raise InvalidArgument(f"{text!r} holds a NUL character, which no process can take")
        found = self._image(image)
        config = image_config(found)
        entry = (entrypoint,) if entrypoint else (() if entrypoint == "" else config.entrypoint)
        cmd = tuple(command) or (config.cmd if entrypoint is None else ())
        if not entry + cmd:
            raise InvalidArgument(f"no command specified: image {image} has none, give one")
        container_id = secrets.token_hex(32)
        container = Container(
            id=container_id,
            name=name or _random_name(),
            image=image,
            image_id=config.id,
            created=_now(),
            args=entry + cmd,
            entrypoint=entry,
            cmd=cmd,
            env=_merge_env(config.env, env),
            workdir=workdir or config.workdir or "/",
            user=config.user if user is None else user,
            hostname=hostname or container_id[:12],
            network=network,
            readonly=readonly,
            autoremove=autoremove,
            labels=dict(labels or {}),
        )
        self.store.insert(container)  # reserves the name, atomically
        attached: builtins.list[MountSpec] = []
        rootfs: Rootfs | None = None
        try:
            self.directory(container).mkdir(mode=0o700)
            (self.directory(container) / "rootfs").mkdir(mode=0o755)
            self.runtime.images.hold(config.id, container.id)
            specs = _with_image_volumes(mounts, config.volumes)
            attached = self._attach_all(specs, container)
            rootfs = self.hook.cargohold_rootfs(
                container=container, image=found, runtime=self.runtime
            )
            if rootfs is None:
                raise CargoholdError("no plugin made a root filesystem (cargohold_rootfs)")
            container = replace(container, mounts=tuple(attached), rootfs=rootfs)
            self.store.update(container)
        except BaseException:
            self._undo_create(container, attached, rootfs)
            raise
        self._emit("create", container)
        return container

    def _image(self, ref: str) -> Image:
        try:
            return self.runtime.images.get(ref)
        except NotFound:
            raise NotFound(
                f"no such image: {ref}: load it first (cargohold image load -i FILE, "
                "or cargohold image import FILE NAME)"
            ) from None

    def _attach_all(
        self, specs: Sequence[MountSpec], container: Container
    ) -> builtins.list[MountSpec]:
        types = self.mount_types()
        # plugins see every mount asked for (a file bind cannot go where others nest)
        container = replace(container, mounts=tuple(specs))
        attached: builtins.list[MountSpec] = []
        pending = list(specs)
        explicit = {s.target for s in specs if s.target}
        try:
            while pending:
                spec = pending.pop(0)
                if spec.type not in types:
                    raise InvalidArgument(
                        f"mount type {spec.type!r} is not known: installed types are "
                        f"{', '.join(sorted(types))}"
                    )
                result = self.hook.cargohold_attach_mount(
                    spec=spec, container=container, runtime=self.runtime
                )
                if result is None:
                    raise CargoholdError(f"no plugin attached the {spec.type} mount {spec.target}")
                if spec.type == VOLUMES_FROM:
                    # a mount given on the command line wins over one taken from another container
                    pending += [s for s in result if s.target not in explicit]
                    continue
                attached.extend(result)
        except BaseException:
            self._detach_all(container, attached, remove_volumes=True)
            raise
        return attached

    def mount_types(self) -> set[str]:
        return {t for provided in self.hook.cargohold_mount_types() for t in provided}

    def _undo_create(
        self, container: Container, attached: Sequence[MountSpec], rootfs: Rootfs | None
    ) -> None:
        self._detach_all(container, attached, remove_volumes=True)
        if rootfs is not None:
            self._remove_rootfs(rootfs)
        self.runtime.images.release(container.image_id, container.id)
        shutil.rmtree(self.directory(container), ignore_errors=True)
        self.store.delete(container.id)

    def _detach_all(
        self, container: Container, specs: Sequence[MountSpec], *, remove_volumes: bool
    ) -> None:
        for spec in reversed(specs):
            try:
                self.hook.cargohold_detach_mount(
                    spec=spec,
                    container=container,
                    runtime=self.runtime,
                    remove_volumes=remove_volumes,
                )
            except CargoholdError as err:
                log.warning("container %s: %s", container.short_id, err)

    def _remove_rootfs(self, rootfs: Rootfs) -> None:
        if rootfs.snapshotter is None or rootfs.key is None:
            return
        snapshotter = self.runtime.snapshotters.get(rootfs.snapshotter)
        with contextlib.suppress(NotFound):
            snapshotter.remove(rootfs.key)

    # -- start and supervise -----------------------------------------------------

    def start(self, ref: str) -> Container:
        """Start a created or exited container under a detached supervisor (shim)."""
        container = self.get(ref)
        if container.state.running:
            return container
        read_end, write_end = os.pipe()
        shim_log = open(self.directory(container) / "shim.log", "ab")  # noqa: SIM115
        try:
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cargohold.core.containers.service",
                    str(self.runtime.state_dir),
                    container.id,
                    str(write_end),
                ],
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=shim_log,
                pass_fds=(write_end,),
                start_new_session=True,
            )
        finally:
            os.close(write_end)
            shim_log.close()
        with os.fdopen(read_end, "rb") as ready:
            answer = ready.read().decode(errors="replace")
        status, _, message = answer.partition("\n")
        if status != "ok":
            code = int(status) if status.isdigit() else runner.EXIT_RUNTIME
            raise StartFailed(code, message or "the container's supervisor died while starting")
        return self.get(container.id)

    def supervise(
        self,
        ref: str,
        *,
        attach: bool = False,
        on_started: Callable[[Container], None] | None = None,
    ) -> int:
        """Run the container to its end in this process; return its exit code.

        ``attach`` also copies its output to our stdout and stderr and passes
        SIGINT/SIGTERM/SIGHUP on to it, as ``docker run`` does.
        """
        container = self.get(ref)
        # one supervisor per container, even when two starts race: an flock held for life
        lock = os.open(
            self.directory(container) / "supervisor.lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise Conflict(f"container {container.name} is already running") from None
        try:
            return self._supervise_locked(self.get(container.id), attach, on_started)
        finally:
            os.close(lock)

    def _supervise_locked(
        self,
        container: Container,
        attach: bool,
        on_started: Callable[[Container], None] | None,
    ) -> int:
        if container.state.running:
            raise Conflict(f"container {container.name} is already running")
        prepared: builtins.list[MountSpec] = []
        try:
            plan: builtins.list[PreparedMount] = []
            for spec in container.mounts:
                answer = self.hook.cargohold_prepare_mount(
                    spec=spec, container=container, runtime=self.runtime
                )
                if answer is None:
                    raise CargoholdError(f"no plugin prepared the {spec.type} mount {spec.target}")
                prepared.append(spec)
                plan.append(answer)
            root_mounts = self._root_mounts(container)
            plan = self._etc_files(container, plan) + plan
        except BaseException as err:
            self._release(container, prepared)
            self._record_failure(container, runner.EXIT_RUNTIME, str(err))
            raise
        with contextlib.ExitStack() as stack:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            for fd in (out_r, err_r):
                stack.callback(os.close, fd)
            logfile = stack.enter_context(open(self.log_path(container), "ab", buffering=0))
            proc_spec = runner.ProcessSpec(
                args=container.args,
                mount_rootfs=lambda target: _mount_root(root_mounts, target),
                rootfs_dir=self.directory(container) / "rootfs",
                env=container.env,
                workdir=container.workdir,
                user=container.user,
                hostname=container.hostname,
                network=container.network,
                readonly=container.readonly,
                mounts=plan,
            )
            try:
                pid = runner.spawn(proc_spec, out_w, err_w)
            except runner.StartError as err:
                self._release(container, prepared)
                self._record_failure(container, err.exit_code, str(err))
                raise StartFailed(err.exit_code, str(err)) from None
            finally:
                os.close(out_w)
                os.close(err_w)
            me = os.getpid()
            state = ContainerState(
                status="running",
                pid=pid,
                pid_start=_start_time(pid),
                supervisor=me,
                supervisor_start=_start_time(me),
                started_at=_now(),
            )
            self.store.set_state(container.id, state)
            container = replace(container, state=state)
            self._emit("start", container)
            if attach:
                stack.enter_context(_forward_signals(pid))
            if on_started is not None:
                on_started(container)
            _pump(out_r, err_r, logfile, echo=attach)
            _, status = os.waitpid(pid, 0)
        code = runner.exit_code_of(status)
        # mounts first: once the state says exited (what stop waits for), volumes are released
        self._release(container, prepared)
        state = replace(state, status="exited", exit_code=code, finished_at=_now())
        self.store.set_state(container.id, state)
        container = replace(container, state=state)
        self._emit("die", container, exitCode=str(code))
        if container.autoremove:
            self.remove(container.id, volumes=True)
        return code

    def _etc_files(
        self, container: Container, plan: Sequence[PreparedMount]
    ) -> builtins.list[PreparedMount]:
        """Docker's /etc/hostname, /etc/hosts and /etc/resolv.conf, unless a mount covers one.

        Written into the container's directory, bound over the image's files:
        they never land in the container's layer (a commit does not keep them).
        """
        taken = {m.target for m in plan}
        hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        if container.network == "host":
            hosts = _read_host_file("/etc/hosts") or hosts
        else:
            hosts += f"127.0.1.1\t{container.hostname}\n"
        files = {
            "/etc/hostname": container.hostname + "\n",
            "/etc/hosts": hosts,
            "/etc/resolv.conf": _read_host_file("/etc/resolv.conf"),
        }
        made = []
        for target, content in files.items():
            if target in taken:
                continue
            path = self.directory(container) / os.path.basename(target)
            if not path.exists():  # written once: edits inside the container survive a restart
                path.write_text(content)
                path.chmod(0o644)
            made.append(PreparedMount(target, str(path)))
        return made

    def _root_mounts(self, container: Container) -> builtins.list[Mount]:
        rootfs = container.rootfs
        if rootfs.snapshotter is None or rootfs.key is None:
            return list(rootfs.mounts)
        return list(self.runtime.snapshotters.get(rootfs.snapshotter).mounts(rootfs.key))

    def _release(self, container: Container, specs: Sequence[MountSpec]) -> None:
        for spec in reversed(specs):
            try:
                self.hook.cargohold_release_mount(
                    spec=spec, container=container, runtime=self.runtime
                )
            except Exception:
                log.exception("container %s: releasing %s failed", container.short_id, spec)

    def _record_failure(self, container: Container, code: int, message: str) -> None:
        state = ContainerState(
            status="exited" if container.state.started_at else "created",
            exit_code=code,
            error=message,
            started_at=container.state.started_at,
            finished_at=_now(),
        )
        self.store.set_state(container.id, state)
        if container.autoremove:
            self.remove(container.id, volumes=True)

    # -- stop, wait, remove ------------------------------------------------------

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        container = self.get(ref)
        st = container.state
        if not st.running or not _alive(st.pid, st.pid_start):
            raise Conflict(f"container {container.name} is not running")
        os.kill(st.pid, sig)
        return container

    def stop(self, ref: str, timeout: float = STOP_TIMEOUT) -> Container:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; a stopped container is no error."""
        container = self.get(ref)
        st = container.state
        if st.running and _alive(st.pid, st.pid_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGTERM)
            if not self._wait_exit(container.id, timeout):
                with contextlib.suppress(ProcessLookupError):
                    if _alive(st.pid, st.pid_start):
                        os.kill(st.pid, signal.SIGKILL)
                self._wait_exit(container.id, 30)
            self._emit("stop", container)
        return self.find(container.id) or container

    def _wait_exit(self, container_id: str, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            current = self.find(container_id)
            if current is None or not current.state.running:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def wait(self, ref: str) -> int:
        """Block until the container has run and stopped; return its exit code."""
        container = self.get(ref)
        while container.state.status == "created" and not container.state.error:
            time.sleep(0.05)
            container = self.get(container.id)
        self._wait_exit(container.id, None)
        final = self.find(container.id)
        return final.state.exit_code if final else container.state.exit_code

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container; ``volumes`` also removes its anonymous volumes."""
        container = self.find(ref)
        if container is None:
            raise NotFound(f"no such container: {ref}")
        if container.state.running:
            if not force:
                raise Conflict(
                    f"you cannot remove a running container {container.id}: "
                    "stop it first, or remove it with -f"
                )
            st = container.state
            with contextlib.suppress(ProcessLookupError):
                if _alive(st.pid, st.pid_start):
                    os.kill(st.pid, signal.SIGKILL)
            self._wait_exit(container.id, 30)
        # release again: idempotent, and it catches up after a lost supervisor
        self._release(container, container.mounts)
        self._detach_all(container, container.mounts, remove_volumes=volumes)
        self._remove_rootfs(container.rootfs)
        if not container.rootfs.key and not container.rootfs.mounts:
            self._sweep_interrupted_create(container)
        self.runtime.images.release(container.image_id, container.id)
        shutil.rmtree(self.directory(container), ignore_errors=True)
        self.store.delete(container.id)
        self._emit("destroy", container)

    def _sweep_interrupted_create(self, container: Container) -> None:
        """A create killed half-way recorded neither mounts nor root: find them by its id.

        Volume holds name the container; the built-in root filesystem's
        snapshot carries its id as a label. Anonymous volumes it made go too.
        """
        for record in self.runtime.store.list():
            if container.id not in record.holders:
                continue
            self.runtime.volumes.release(record.name, container.id)
            made_for_it = ANONYMOUS_LABEL in record.labels and record.holders == (container.id,)
            if made_for_it:
                with contextlib.suppress(CargoholdError):
                    self.runtime.volumes.remove(record.name)
        snapshotter = self.runtime.snapshotters.default()
        for info in snapshotter.walk(lambda i: i.labels.get(CONTAINER_LABEL) == container.id):
            with contextlib.suppress(NotFound):
                snapshotter.remove(info.key)

    # -- logs --------------------------------------------------------------------

    def logs(self, ref: str, *, follow: bool = False) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) records of the container's output, oldest first."""
        container = self.get(ref)
        path = self.log_path(container)
        if not path.exists():
            return
        with open(path, "rb") as file:
            while True:
                line = file.readline()
                if line.endswith(b"\n"):
                    record = json.loads(line)
                    yield record["stream"], record["log"].encode("utf-8", "surrogateescape")
                    continue
                if not follow:
                    return
                current = self.find(container.id)
                if current is None or not current.state.running:
                    follow = False  # read what is left, then stop
                    file.seek(file.tell() - len(line))
                    continue
                file.seek(file.tell() - len(line))
                time.sleep(0.1)

    # -- commit ------------------------------------------------------------------

    def commit(
        self,
        ref: str,
        repository: str | None = None,
        *,
        message: str = "",
        author: str = "",
        changes: Sequence[str] = (),
    ) -> Image:
        """A new image: the container's image plus one layer of its changes.

        Deleted paths become whiteouts (``.wh.<name>``). A stopped container's
        layer is read through a second mount of its snapshot; a running one is
        paused (every process of its PID namespace gets SIGSTOP, as Docker's
        ``commit --pause``) and read through ``/proc/<pid>/root``, leaving out
        what is mounted in it (volumes, binds, tmpfs, /proc, /sys, /dev).
        """
        container = self.get(ref)
        rootfs = container.rootfs
        if rootfs.snapshotter is None or rootfs.key is None:
            raise InvalidArgument(
                f"container {container.name} has no snapshot root filesystem to commit"
            )
        base = self.runtime.images.get(container.image_id)
        snapshotter = self.runtime.snapshotters.get(rootfs.snapshotter)
        parent = snapshotter.stat(rootfs.key).parent
        run_config = {
            **base.run_config,
            "Env": list(container.env),
            "Cmd": list(container.cmd),
            "Entrypoint": list(container.entrypoint) or None,
            "WorkingDir": container.workdir if container.workdir != "/" else "",
            "User": container.user,
            "Hostname": container.hostname,
        }
        work = self.directory(container)
        view_key = new_key("commit")
        with contextlib.ExitStack() as stack:
            view_mounts = snapshotter.view(view_key, parent)
            stack.callback(snapshotter.remove, view_key)
            lower = stack.enter_context(tempfile.TemporaryDirectory(dir=work))
            stack.enter_context(mounted(view_mounts, lower))
            layer = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=work))) / "layer.tar"
            exclude: builtins.list[str] = []
            with contextlib.ExitStack() as reading:  # paused or mounted only while we read
                if container.state.running:
                    upper = reading.enter_context(_paused(container))
                    exclude = ["proc", "sys", "dev", *_ETC_PLACEHOLDERS]
                    exclude += [m.target.strip("/") for m in container.mounts if m.target]
                else:
                    upper = Path(reading.enter_context(tempfile.TemporaryDirectory(dir=work)))
                    reading.enter_context(mounted(snapshotter.mounts(rootfs.key), upper))
                from cargohold.core.containers.diff import (
                    write_changes,  # (tarfile: not for every run)
                )

                write_changes(
                    Path(lower), upper, layer, placeholders=_ETC_PLACEHOLDERS, exclude=exclude
                )
            image = self.runtime.images.create_image(
                base,
                layer,
                ref=repository,
                changes=changes,
                run_config=run_config,
                comment=message,
                author=author,
                created_by=f"cargohold commit {container.id}",
            )
        self._emit("commit", container, imageID=image.id)
        return image

    # -- views -------------------------------------------------------------------

    def mount_points(self, container: Container) -> builtins.list[dict[str, Any]]:
        """Docker's ``Mounts`` entries."""
        points = []
        for m in container.mounts:
            entry: dict[str, Any] = {
                "Type": m.type,
                "Source": m.source,
                "Destination": m.target,
                "Mode": "ro" if m.readonly else "",
                "RW": not m.readonly,
                "Propagation": m.options.get("propagation", "rprivate" if m.type == "bind" else ""),
            }
            if m.type == VOLUME:
                entry["Name"] = m.source
                try:
                    volume = self.runtime.volumes.get(m.source)
                    entry["Source"], entry["Driver"] = volume.mountpoint, volume.driver
                except CargoholdError:
                    entry["Source"], entry["Driver"] = "", ""
                entry["Mode"] = "z" if not m.readonly else "ro"
            points.append(entry)
        return points

    def inspect(self, container: Container) -> dict[str, Any]:
        """``docker inspect``'s shape, for the fields cargohold has."""
        st = container.state
        return {
            "Id": container.id,
            "Created": container.created,
            "Path": container.args[0] if container.args else "",
            "Args": list(container.args[1:]),
            "State": {
                "Status": st.status,
                "Running": st.running,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": st.pid if st.running else 0,
                "ExitCode": st.exit_code,
                "Error": st.error,
                "StartedAt": st.started_at or "0001-01-01T00:00:00Z",
                "FinishedAt": st.finished_at or "0001-01-01T00:00:00Z",
            },
            "Image": container.image_id,
            "Name": "/" + container.name,
            "LogPath": str(self.log_path(container)),
            "Driver": container.rootfs.snapshotter or "",
            "HostConfig": {
                "NetworkMode": container.network,
                "ReadonlyRootfs": container.readonly,
                "AutoRemove": container.autoremove,
                "Binds": [f"{m.source}:{m.target}" for m in container.mounts if m.type == "bind"],
                "Tmpfs": {
                    m.target: m.options.get("tmpfs", "")
                    for m in container.mounts
                    if m.type == "tmpfs"
                },
            },
            "GraphDriver": {
                "Name": container.rootfs.snapshotter or "",
                "Data": {"Key": container.rootfs.key or ""},
            },
            "Mounts": self.mount_points(container),
            "Config": {
                "Hostname": container.hostname,
                "User": container.user,
                "Env": list(container.env),
                "Cmd": list(container.cmd),
                "Entrypoint": list(container.entrypoint) or None,
                "Image": container.image,
                "WorkingDir": container.workdir,
                "Labels": dict(container.labels),
            },
        }

    def summary(self, container: Container) -> dict[str, Any]:
        """One item of the Engine API's ``GET /containers/json``."""
        return {
            "Id": container.id,
            "Names": ["/" + container.name],
            "Image": container.image,
            "ImageID": container.image_id,
            "Command": " ".join(container.args),
            "Created": int(_parse_time(container.created)),
            "Ports": [],
            "Labels": dict(container.labels),
            "State": container.state.status,
            "Status": describe_status(container.state),
            "HostConfig": {"NetworkMode": container.network},
            "NetworkSettings": {"Networks": {}},
            "Mounts": self.mount_points(container),
        }

    # -- helpers -----------------------------------------------------------------

    def _emit(self, action: str, container: Container, **attributes: str) -> None:
        event = ContainerEvent(
            action, container.id, container.name, container.image, {**attributes}
        )
        try:
            self.hook.cargohold_container_event(event=event)
        except Exception:
            log.exception("a cargohold_container_event hook failed for %s", container.short_id)


class StartFailed(CargoholdError):
    """The container could not start; ``exit_code`` is Docker's code (125, 126, 127)."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def image_config(image: Image) -> ImageConfig:
    """The container-relevant config of an image from the image store."""
    return ImageConfig(
        id=image.id,
        env=tuple(image.env),
        cmd=tuple(image.cmd),
        entrypoint=tuple(image.entrypoint),
        workdir=image.working_dir,
        user=image.user,
        volumes=tuple(image.volumes),
    )


def _parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _ago(text: str) -> str:
    seconds = max(0, int(time.time() - _parse_time(text)))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second" if seconds < 1 else f"{seconds} seconds"


def describe_status(state: ContainerState) -> str:
    """``docker ps``'s STATUS column."""
    if state.running:
        return f"Up {_ago(state.started_at)}"
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {_ago(state.finished_at)} ago"
    return "Created"


@contextlib.contextmanager
def _paused(container: Container) -> Iterator[Path]:
    """Stop every process of a running container; yield its root as the host sees it."""
    st = container.state
    if not _alive(st.pid, st.pid_start):
        raise Conflict(f"container {container.name} is not running any more")
    namespace = os.readlink(f"/proc/{st.pid}/ns/pid")
    stopped: builtins.list[int] = []
    try:
        for _ in range(3):  # again: a process may have forked while we stopped the others
            for pid in _pids_in(namespace):
                if pid not in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                        stopped.append(pid)
        deadline = time.monotonic() + 5
        while any(_state(pid) not in ("T", "Z", "") for pid in stopped):
            if time.monotonic() > deadline:
                raise CargoholdError(f"container {container.name} did not pause in 5 s")
            time.sleep(0.005)
        yield Path(f"/proc/{st.pid}/root")
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _pids_in(namespace: str) -> builtins.list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
    return found


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return ""
    return text[text.rindex(b")") + 2 :].split()[0].decode()


#: Where `_etc_files` mounts; an empty file the runner made there is no change to commit.
_ETC_PLACEHOLDERS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


def _read_host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _mount_root(root_mounts: Sequence[Mount], target: Path) -> None:
    for m in root_mounts:
        m.mount(target)


def _with_image_volumes(specs: Sequence[MountSpec], volumes: Sequence[str]) -> list[MountSpec]:
    """The image's VOLUME paths become anonymous volumes, unless a mount covers the path."""
    taken = {os.path.normpath(s.target) for s in specs if s.target}
    extra = [
        MountSpec(VOLUME, "", os.path.normpath(path), False, {"anonymous": "true"})
        for path in volumes
        if path.startswith("/") and os.path.normpath(path) not in taken
    ]
    return [*specs, *extra]


def _merge_env(image_env: Sequence[str], given: Sequence[str]) -> tuple[str, ...]:
    """Image Env, then ``-e`` (``-e NAME`` alone takes the value from our environment)."""
    merged: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in given:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"bad environment variable {item!r}: write NAME=value")
        if sep:
            merged[key] = value
        elif key in os.environ:
            merged[key] = os.environ[key]
    return tuple(f"{k}={v}" for k, v in merged.items())


def _check_name(name: str) -> str:
    name = name.lstrip("/")
    if not _NAME.fullmatch(name) or len(name) > 255:
        raise InvalidArgument(
            f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
            "at least two characters"
        )
    return name


_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "quiet", "sharp", "tidy", "wise")
_NOUNS = ("anchor", "barge", "cargo", "dock", "hold", "keel", "mast", "pier", "quay", "sail")


def _random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}_{secrets.token_hex(3)}"


@contextlib.contextmanager
def _forward_signals(pid: int) -> Iterator[None]:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {
        s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pump(out_r: int, err_r: int, logfile: BinaryIO, *, echo: bool) -> None:
    """Copy the container's output into the log (Docker's json-file lines) until both close."""
    streams = {out_r: ("stdout", 1), err_r: ("stderr", 2)}
    partial = {out_r: b"", err_r: b""}
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(streams)
        while open_fds:
            for key, _ in selector.select():
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                name, echo_fd = streams[fd]
                if not chunk:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                    if partial[fd]:
                        _write_log(logfile, name, partial[fd])
                    continue
                if echo:
                    with contextlib.suppress(OSError):
                        os.write(echo_fd, chunk)
                data = partial[fd] + chunk
                lines = data.split(b"\n")
                partial[fd] = lines.pop()
                if len(partial[fd]) > 16384:  # as Docker: split very long lines
                    lines.append(partial[fd])
                    partial[fd] = b""
                    _write_log(logfile, name, *(line + b"\n" for line in lines[:-1]), lines[-1])
                else:
                    _write_log(logfile, name, *(line + b"\n" for line in lines))


def _write_log(logfile: BinaryIO, stream: str, *chunks: bytes) -> None:
    if not chunks:
        return
    now = _now()
    records = [
        json.dumps({"log": c.decode("utf-8", "surrogateescape"), "stream": stream, "time": now})
        for c in chunks
    ]
    logfile.write(("\n".join(records) + "\n").encode("utf-8", "surrogateescape"))


def _shim_main(argv: Sequence[str]) -> int:
    """``python -m cargohold.core.containers.service STATE_DIR ID READY_FD``: detached supervisor."""
    from cargohold.core.runtime import Runtime

    state_dir, container_id, ready_text = argv
    ready_fd = int(ready_text)
    os.set_inheritable(ready_fd, False)

    def started(_: Container) -> None:
        os.write(ready_fd, b"ok\n")
        os.close(ready_fd)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)

    with Runtime(Path(state_dir)) as runtime:
        try:
            return runtime.containers.supervise(container_id, on_started=started)
        except StartFailed as err:
            os.write(ready_fd, f"{err.exit_code}\n{err}".encode())
            return err.exit_code
        except CargoholdError as err:
            with contextlib.suppress(OSError):
                os.write(ready_fd, f"{runner.EXIT_RUNTIME}\n{err}".encode())
            return runner.EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(_shim_main(sys.argv[1:]))
