"""Docker's JSON shapes of cargohold's objects: what the Engine API answers.

The docker CLI prints these shapes (``docker image inspect`` prints the
Engine API's answer), so both frontends that speak Docker's JSON, the
Engine-API daemon and cargohold's own CLI, build them here, and the core's
objects stay free of wire formats.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cargohold.core.containers.records import Container
    from cargohold.core.images.records import Image
    from cargohold.core.volumes.service import Volume, VolumeService


def image_inspect(image: Image) -> dict[str, Any]:
    """``docker image inspect``'s shape, for the fields cargohold has."""
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": [],
        "Parent": "",
        "Comment": image.config.get("comment", ""),
        "Created": image.config.get("created", image.created),
        "Author": image.config.get("author", ""),
        "Config": dict(image.run_config),
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Metadata": {"LastTagTime": image.created},
    }


def image_summary(image: Image) -> dict[str, Any]:
    """One item of the Engine API's ``GET /images/json``."""
    created = image.config.get("created", image.created)
    try:
        stamp = int(datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp())
    except ValueError:
        stamp = 0
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": list(image.repo_tags) or ["<none>:<none>"],
        "RepoDigests": [],
        "Created": stamp,
        "Size": image.size,
        "SharedSize": -1,
        "VirtualSize": image.size,
        "Labels": image.labels,
        "Containers": len(image.holders),
    }


# -- containers (``docker inspect``, ``docker ps``) ---------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"
#: (volume name) -> (host path, driver), or a CargoholdError
VolumeLookup = Callable[[str], tuple[str, str]]


def volume_lookup(volumes: VolumeService) -> VolumeLookup:
    def lookup(name: str) -> tuple[str, str]:
        volume = volumes.get(name)
        return volume.mountpoint, volume.driver

    return lookup


def mount_points(container: Container, lookup: VolumeLookup) -> list[dict[str, Any]]:
    """Docker's ``Mounts`` entries."""
    from cargohold.core.api.container_mounts import VOLUME
    from cargohold.core.api.errors import CargoholdError

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
                entry["Source"], entry["Driver"] = lookup(m.source)
            except CargoholdError:
                entry["Source"], entry["Driver"] = "", ""
            entry["Mode"] = "z" if not m.readonly else "ro"
        points.append(entry)
    return points


def container_inspect(container: Container, lookup: VolumeLookup, log_path: str) -> dict[str, Any]:
    """``GET /containers/{id}/json``, for the fields cargohold has."""
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
            "StartedAt": st.started_at or ZERO_TIME,
            "FinishedAt": st.finished_at or ZERO_TIME,
        },
        "Image": container.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": log_path,
        "Name": "/" + container.name,
        "RestartCount": 0,
        "Driver": container.rootfs.snapshotter or "",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": container.network,
            "ReadonlyRootfs": container.readonly,
            "AutoRemove": container.autoremove,
            "Binds": [f"{m.source}:{m.target}" for m in container.mounts if m.type == "bind"],
            "Tmpfs": {
                m.target: m.options.get("tmpfs", "") for m in container.mounts if m.type == "tmpfs"
            },
            "LogConfig": {"Type": "json-file", "Config": {}},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        },
        "GraphDriver": {
            "Name": container.rootfs.snapshotter or "",
            "Data": {"Key": container.rootfs.key or ""},
        },
        "Mounts": mount_points(container, lookup),
        "Config": {
            "Hostname": container.hostname,
            "User": container.user,
            "AttachStdin": container.stdin_open,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": container.tty,
            "OpenStdin": container.stdin_open,
            "StdinOnce": container.stdin_open,
            "Env": list(container.env),
            "Cmd": list(container.cmd),
            "Entrypoint": list(container.entrypoint) or None,
            "Image": container.image,
            "WorkingDir": container.workdir,
            "Labels": dict(container.labels),
        },
        "NetworkSettings": {"Networks": {}, "Ports": {}},
    }


def container_summary(container: Container, lookup: VolumeLookup) -> dict[str, Any]:
    """One item of ``GET /containers/json``."""
    from cargohold.core.containers.records import describe_status, parse_time

    return {
        "Id": container.id,
        "Names": ["/" + container.name],
        "Image": container.image,
        "ImageID": container.image_id,
        "Command": " ".join(container.args),
        "Created": int(parse_time(container.created)),
        "Ports": [],
        "Labels": dict(container.labels),
        "State": container.state.status,
        "Status": describe_status(container.state),
        "HostConfig": {"NetworkMode": container.network},
        "NetworkSettings": {"Networks": {}},
        "Mounts": mount_points(container, lookup),
    }


def volume(v: Volume) -> dict[str, Any]:
    """The Engine API's Volume object (``GET /volumes/{name}``, one item of the list)."""
    return {
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": v.mountpoint,
        "CreatedAt": v.created_at,
        "Status": dict(v.status),
        "Labels": dict(v.labels),
        "Scope": v.scope,
        "Options": dict(v.options),
        "UsageData": None,
    }
