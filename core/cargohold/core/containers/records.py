"""What the core knows of a container: plain records, no behaviour.

`Container` is what hooks receive and what the container store keeps as a
JSON row; `ContainerState` is Docker's ``State`` (the part rewritten at each
start and exit); `Rootfs` is what the `cargohold_rootfs` plugin made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cargohold.core.api.clock import utc_now
from cargohold.core.api.container_mounts import MountSpec
from cargohold.core.api.errors import CargoholdError
from cargohold.core.api.snapshots import SnapshotMount

STOP_TIMEOUT = 10
#: Label on the snapshot holding a container's root filesystem: its id.
CONTAINER_LABEL = "cargohold.container"
#: The exit code recorded for a container whose supervisor died first.
EXIT_SUPERVISOR_LOST = 255


def parse_time(text: str) -> float:
    """A timestamp as `utc_now` writes it, as seconds since the epoch (0 if unreadable)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


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
    mounts: tuple[SnapshotMount, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "Snapshotter": self.snapshotter,
            "Key": self.key,
            "Mounts": [m.to_dict() for m in self.mounts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rootfs:
        mounts = tuple(
            SnapshotMount(m["Type"], m["Source"], tuple(m.get("Options", ())))
            for m in data["Mounts"]
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

    def to_json(self) -> str:
        return json.dumps(asdict(self))


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
    #: -i: the process's stdin stays open (the supervisor feeds it)
    stdin_open: bool = False
    #: -t: the process runs on a pseudo-terminal
    tty: bool = False

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
    time: str = field(default_factory=lambda: utc_now("microseconds"))


class StartFailed(CargoholdError):
    """The container could not start; ``exit_code`` is Docker's code (125, 126, 127)."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _ago(text: str, clock: float) -> str:
    seconds = max(0, int(clock - parse_time(text)))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "Less than a second" if seconds < 1 else f"{seconds} seconds"


def describe_status(state: ContainerState) -> str:
    """``docker ps``'s STATUS column (both the CLI and the Engine API show it)."""
    import time

    clock = time.time()
    if state.running:
        return f"Up {_ago(state.started_at, clock)}"
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {_ago(state.finished_at, clock)} ago"
    return "Created"
