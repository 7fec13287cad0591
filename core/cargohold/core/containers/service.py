"""The container lifecycle: create, find, stop, wait, remove, logs.

A container is a row in ``<state>/containers.db`` (`ContainerStore`) and a
directory ``<state>/containers/<id>/`` (its log and the empty directory its
root is mounted on, inside its own mount namespace). Every storage decision
goes through hooks: the root filesystem (`cargohold_rootfs`) and each mount
(``cargohold_attach_mount`` at create, ``..._prepare_mount`` at start,
``..._release_mount`` at stop, ``..._detach_mount`` at remove).

While a container runs, one process supervises it (`supervisor`): the
foreground ``run`` itself, or a detached shim (``python -m
cargohold.core.shim``). Other commands only read the row and send signals.

The service is handed its collaborators (volumes, images, snapshotters, the
hook relay, paths), not the runtime: ``host`` is only passed on to hooks as
their ``runtime`` argument.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargohold.core.api.clock import utc_now
from cargohold.core.api.container_mounts import VOLUME, VOLUMES_FROM, MountSpec
from cargohold.core.api.errors import CargoholdError, Conflict, InvalidArgument, NotFound
from cargohold.core.api.logs import get_logger
from cargohold.core.containers import logs, names, procfs
from cargohold.core.containers.records import (
    CONTAINER_LABEL,
    EXIT_SUPERVISOR_LOST,
    STOP_TIMEOUT,
    Container,
    ContainerEvent,
    ContainerState,
    Rootfs,
    StartFailed,
    describe_status,
)
from cargohold.core.images.config import container_config
from cargohold.core.state.container_store import ContainerStore, name_conflict
from cargohold.core.volumes.service import ANONYMOUS_LABEL

if TYPE_CHECKING:
    from cargohold.core.images.records import Image
    from cargohold.core.images.store import ImageStore
    from cargohold.core.runtime import Runtime
    from cargohold.core.snapshots.registry import SnapshotterRegistry
    from cargohold.core.volumes.service import VolumeService

__all__ = [
    "CONTAINER_LABEL",
    "Container",
    "ContainerEvent",
    "ContainerService",
    "ContainerState",
    "Rootfs",
    "StartFailed",
    "describe_status",
]

log = get_logger(__name__)


class ContainerService:
    """Create, start, stop, remove and find the containers of one state directory."""

    def __init__(
        self,
        *,
        state_dir: Path,
        hook: Any,
        volumes: VolumeService,
        images: ImageStore,
        snapshotters: SnapshotterRegistry,
        host: Runtime,
    ) -> None:
        self.state_dir = state_dir
        self.hook = hook
        self.volumes = volumes
        self.images = images
        self.snapshotters = snapshotters
        self.host = host  # what hooks get as ``runtime``; never used here
        self.root = state_dir / "containers"
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.store = ContainerStore(state_dir / "containers.db")
        from cargohold.core.containers.supervisor import Supervisor

        self.supervisor = Supervisor(self)

    def close(self) -> None:
        self.store.close()

    # -- lookup ------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """A container by full id, name, or unique id prefix."""
        container = self.find(ref)
        if container is None:
            raise NotFound(f"No such container: {ref}")
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

    def list(self, *, all: bool = False) -> builtins.list[Container]:
        containers = [self._refresh(c) for c in self.store.list()]
        return containers if all else [c for c in containers if c.state.running]

    def _refresh(self, container: Container) -> Container:
        """A running container whose supervisor is gone (killed, crashed) has exited."""
        st = container.state
        if st.running and not procfs.alive(st.supervisor, st.supervisor_start):
            if procfs.alive(st.pid, st.pid_start):  # orphaned process: end it, nobody logs it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(st.pid, signal.SIGKILL)
            state = replace(
                st,
                status="exited",
                exit_code=EXIT_SUPERVISOR_LOST,
                error="the supervising process ended before the container",
                finished_at=utc_now("microseconds"),
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
        entrypoint: str | Sequence[str] | None = None,
        hostname: str | None = None,
        network: str = "none",
        readonly: bool = False,
        autoremove: bool = False,
        labels: Mapping[str, str] | None = None,
        stdin_open: bool = False,
        tty: bool = False,
    ) -> Container:
        """Create a container; on any failure nothing of it is left behind.

        ``entrypoint`` replaces the image's: a string is one word (the CLI's
        ``--entrypoint``), a sequence is the Engine API's list, ``""`` or
        ``[]`` clears it.
        """
        if name is not None:
            name = names.check_name(name)
            if (holder := self.store.by_name(name)) is not None:
                raise name_conflict(name, holder)
        if network not in ("none", "host"):
            raise InvalidArgument(f"network {network!r} is not supported: use none or host")
        if workdir is not None and workdir and not workdir.startswith("/"):
            raise InvalidArgument(f"working directory {workdir!r} must be an absolute path")
        if hostname is not None:
            names.check_hostname(hostname)
        given_entry = (entrypoint,) if isinstance(entrypoint, str) else entrypoint
        for text in (*command, *env, *(given_entry or ()), workdir or "", user or ""):
            if "\0" in text:
                raise InvalidArgument(f"{text!r} holds a NUL character, which no process can take")
        found = self._image(image)
        config = container_config(found)
        if given_entry is None:
            entry = config.entrypoint
        else:
            entry = tuple(given_entry) if any(given_entry) else ()
        cmd = tuple(command) or (config.cmd if given_entry is None else ())
        if not entry + cmd:
            raise InvalidArgument(f"no command specified: image {image} has none, give one")
        container_id = os.urandom(32).hex()
        container = Container(
            id=container_id,
            name=name or names.random_name(),
            image=image,
            image_id=config.id,
            created=utc_now("microseconds"),
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
            stdin_open=stdin_open,
            tty=tty,
        )
        self.store.insert(container)  # reserves the name, atomically
        attached: builtins.list[MountSpec] = []
        rootfs: Rootfs | None = None
        try:
            self.directory(container).mkdir(mode=0o700)
            (self.directory(container) / "rootfs").mkdir(mode=0o755)
            # there from the start: a reader attached before the first start holds it open
            self.log_path(container).touch(mode=0o600)
            self.images.hold(config.id, container.id)
            specs = _with_image_volumes(mounts, config.volumes)
            attached = self._attach_all(specs, container)
            rootfs = self.hook.cargohold_rootfs(container=container, image=found, runtime=self.host)
            if rootfs is None:
                raise CargoholdError("no plugin made a root filesystem (cargohold_rootfs)")
            container = replace(container, mounts=tuple(attached), rootfs=rootfs)
            self.store.update(container)
        except BaseException:
            self._undo_create(container, attached, rootfs)
            raise
        self.emit("create", container)
        return container

    def _image(self, ref: str) -> Image:
        try:
            return self.images.get(ref)
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
                    spec=spec, container=container, runtime=self.host
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
        self.images.release(container.image_id, container.id)
        _remove_tree(self.directory(container))
        self.store.delete(container.id)

    def _detach_all(
        self, container: Container, specs: Sequence[MountSpec], *, remove_volumes: bool
    ) -> None:
        for spec in reversed(specs):
            try:
                self.hook.cargohold_detach_mount(
                    spec=spec, container=container, runtime=self.host, remove_volumes=remove_volumes
                )
            except CargoholdError as err:
                log.warning("container %s: %s", container.short_id, err)

    def _remove_rootfs(self, rootfs: Rootfs) -> None:
        if rootfs.snapshotter is None or rootfs.key is None:
            return
        with contextlib.suppress(NotFound):
            self.snapshotters.get(rootfs.snapshotter).remove(rootfs.key)

    # -- start and supervise (the supervisor does the work) -------------------------

    def start(self, ref: str) -> Container:
        """Start a created or exited container under a detached supervisor (shim)."""
        return self.supervisor.start_detached(self.get(ref))

    def supervise(
        self,
        ref: str,
        *,
        attach: bool = False,
        on_started: Callable[[Container], None] | None = None,
    ) -> int:
        """Run the container to its end in this process; return its exit code.

        ``attach`` also connects it to our stdin (with ``-i``), stdout and
        stderr (a pseudo-terminal with ``-t``) and passes SIGINT, SIGTERM and
        SIGHUP on, as ``docker run`` does.
        """
        return self.supervisor.supervise(self.get(ref), attach=attach, on_started=on_started)

    def release_mounts(self, container: Container, specs: Sequence[MountSpec]) -> None:
        for spec in reversed(specs):
            try:
                self.hook.cargohold_release_mount(spec=spec, container=container, runtime=self.host)
            except Exception:
                log.exception("container %s: releasing %s failed", container.short_id, spec)

    # -- stop, wait, remove ------------------------------------------------------

    def kill(self, ref: str, sig: int = signal.SIGKILL) -> Container:
        container = self.get(ref)
        st = container.state
        if not st.running or not procfs.alive(st.pid, st.pid_start):
            raise Conflict(f"container {container.id} is not running")
        os.kill(st.pid, sig)
        return container

    def stop(self, ref: str, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> Container:
        """``sig``, then SIGKILL after ``timeout`` seconds; a stopped container is no error."""
        container = self.get(ref)
        st = container.state
        if st.running and procfs.alive(st.pid, st.pid_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, sig)
            if timeout < 0 or not self.wait_exit(container.id, timeout):
                with contextlib.suppress(ProcessLookupError):
                    if procfs.alive(st.pid, st.pid_start):
                        os.kill(st.pid, signal.SIGKILL)
                self.wait_exit(container.id, 30)
            self.emit("stop", container)
        return self.find(container.id) or container

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        """Whether the container stopped running within ``timeout`` seconds (None: ever)."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        delay = 0.002
        while True:
            current = self.find(container_id)
            if current is None or not current.state.running:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def wait(self, ref: str) -> int:
        """Block until the container has run and stopped; return its exit code."""
        container = self.get(ref)
        while container.state.status == "created" and not container.state.error:
            time.sleep(0.02)
            container = self.get(container.id)
        self.wait_exit(container.id, None)
        final = self.find(container.id)
        return final.state.exit_code if final else container.state.exit_code

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container; ``volumes`` also removes its anonymous volumes."""
        container = self.find(ref)
        if container is None:
            raise NotFound(f"No such container: {ref}")
        if container.state.running:
            if not force:
                raise Conflict(
                    f"you cannot remove a running container {container.id}: "
                    "stop it first, or remove it with -f"
                )
            st = container.state
            with contextlib.suppress(ProcessLookupError):
                if procfs.alive(st.pid, st.pid_start):
                    os.kill(st.pid, signal.SIGKILL)
            self.wait_exit(container.id, 30)
        # release again: idempotent, and it catches up after a lost supervisor
        self.release_mounts(container, container.mounts)
        self._detach_all(container, container.mounts, remove_volumes=volumes)
        self._remove_rootfs(container.rootfs)
        if not container.rootfs.key and not container.rootfs.mounts:
            self._sweep_interrupted_create(container)
        self.images.release(container.image_id, container.id)
        _remove_tree(self.directory(container))
        self.store.delete(container.id, container.state.exit_code)
        self.emit("destroy", container)

    def _sweep_interrupted_create(self, container: Container) -> None:
        """A create killed half-way recorded neither mounts nor root: find them by its id.

        Volume holds name the container; the built-in root filesystem's
        snapshot carries its id as a label. Anonymous volumes it made go too.
        """
        for record in self.volumes.store.list():
            if container.id not in record.holders:
                continue
            self.volumes.release(record.name, container.id)
            made_for_it = ANONYMOUS_LABEL in record.labels and record.holders == (container.id,)
            if made_for_it:
                with contextlib.suppress(CargoholdError):
                    self.volumes.remove(record.name)
        snapshotter = self.snapshotters.default()
        for info in snapshotter.walk(lambda i: i.labels.get(CONTAINER_LABEL) == container.id):
            with contextlib.suppress(NotFound):
                snapshotter.remove(info.key)

    # -- logs and commit ---------------------------------------------------------

    def logs(self, ref: str, *, follow: bool = False) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) records of the container's output, oldest first."""
        container = self.get(ref)

        def running() -> bool:
            current = self.find(container.id)
            return current is not None and current.state.running

        return logs.read(self.log_path(container), follow=running if follow else None)

    def commit(
        self,
        ref: str,
        repository: str | None = None,
        *,
        message: str = "",
        author: str = "",
        changes: Sequence[str] = (),
        pause: bool = True,
    ) -> Image:
        """A new image: the container's image plus one layer of its changes (`commit`);
        a running container is paused while it is read, unless not ``pause``."""
        from cargohold.core.containers.commit import commit

        image = commit(
            self,
            self.get(ref),
            repository,
            message=message,
            author=author,
            changes=changes,
            pause=pause,
        )
        return image

    # -- helpers -----------------------------------------------------------------

    def emit(self, action: str, container: Container, **attributes: str) -> None:
        event = ContainerEvent(
            action, container.id, container.name, container.image, {**attributes}
        )
        try:
            self.hook.cargohold_container_event(event=event)
        except Exception:
            log.exception("a cargohold_container_event hook failed for %s", container.short_id)


def _remove_tree(path: Path) -> None:
    import shutil  # (with zlib, bz2 and lzma: not for every command's start-up)

    shutil.rmtree(path, ignore_errors=True)


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
