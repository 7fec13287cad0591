"""``commit``: a new image from a container's changes, as ``docker commit``.

The layer holds what differs between the container's root and its image's
(deleted paths as ``.wh.<name>`` whiteouts). A stopped container's layer is
read through a second mount of its snapshot; a running one is paused (every
process of its PID namespace gets SIGSTOP, as Docker's ``commit --pause``)
and read through ``/proc/<pid>/root``, leaving out what is mounted in it
(volumes, binds, tmpfs, /proc, /sys, /dev, the /etc files).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cargohold.core.api.errors import CargoholdError, Conflict, InvalidArgument
from cargohold.core.containers import procfs
from cargohold.core.containers.etcfiles import PLACEHOLDERS
from cargohold.core.containers.records import Container
from cargohold.core.kernel.snapshot_mounts import mounted
from cargohold.core.snapshots.service import new_key

if TYPE_CHECKING:
    from cargohold.core.containers.service import ContainerService
    from cargohold.core.images.records import Image


def commit(
    service: ContainerService,
    container: Container,
    repository: str | None = None,
    *,
    message: str = "",
    author: str = "",
    changes: Sequence[str] = (),
    pause: bool = True,
) -> Image:
    """``pause``: stop a running container's processes while its files are read
    (Docker's default, for a consistent layer); False reads them as they run."""
    rootfs = container.rootfs
    if rootfs.snapshotter is None or rootfs.key is None:
        raise InvalidArgument(
            f"container {container.name} has no snapshot root filesystem to commit"
        )
    base = service.images.get(container.image_id)
    snapshotter = service.snapshotters.get(rootfs.snapshotter)
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
    work = service.directory(container)
    view_key = new_key("commit")
    with contextlib.ExitStack() as stack:
        view_mounts = snapshotter.view(view_key, parent)
        stack.callback(snapshotter.remove, view_key)
        lower = stack.enter_context(tempfile.TemporaryDirectory(dir=work))
        stack.enter_context(mounted(view_mounts, lower))
        layer = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=work))) / "layer.tar"
        exclude: list[str] = []
        with contextlib.ExitStack() as reading:  # paused or mounted only while we read
            if container.state.running:
                upper = reading.enter_context(paused(container, stop=pause))
                exclude = ["proc", "sys", "dev", *PLACEHOLDERS]
                exclude += [m.target.strip("/") for m in container.mounts if m.target]
            else:
                upper = Path(reading.enter_context(tempfile.TemporaryDirectory(dir=work)))
                reading.enter_context(mounted(snapshotter.mounts(rootfs.key), upper))
            from cargohold.core.containers.diff import write_changes  # (tarfile: not for every run)

            write_changes(Path(lower), upper, layer, placeholders=PLACEHOLDERS, exclude=exclude)
        image = service.images.create_image(
            base,
            layer,
            ref=repository,
            changes=changes,
            run_config=run_config,
            comment=message,
            author=author,
            created_by=f"cargohold commit {container.id}",
        )
    service.emit("commit", container, imageID=image.id)
    return image


@contextlib.contextmanager
def paused(container: Container, *, stop: bool = True) -> Iterator[Path]:
    """Stop every process of a running container (unless not ``stop``); yield its
    root as the host sees it."""
    st = container.state
    if not procfs.alive(st.pid, st.pid_start):
        raise Conflict(f"container {container.name} is not running any more")
    namespace = procfs.pid_namespace(st.pid)
    stopped: list[int] = []
    try:
        # again: a process may have forked while we stopped the others
        for _ in range(3 if stop else 0):
            for pid in procfs.pids_in(namespace):
                if pid not in stopped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                        stopped.append(pid)
        deadline = time.monotonic() + 5
        while any(procfs.state(pid) not in ("T", "Z", "") for pid in stopped):
            if time.monotonic() > deadline:
                raise CargoholdError(f"container {container.name} did not pause in 5 s")
            time.sleep(0.005)
        yield Path(f"/proc/{st.pid}/root")
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
