"""One value type for every mount a container asks for, parsed from docker's syntaxes.

`MountSpec` is what a user asked (``-v``, ``--mount``, ``--tmpfs``,
``--volumes-from``); the plugin for its ``type`` turns it into a
`PreparedMount`, which is what the namespace runner mounts (a host path or a
filesystem, at a path inside the container).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cargohold.core.api.errors import InvalidArgument

VOLUME = "volume"
BIND = "bind"
TMPFS = "tmpfs"
VOLUMES_FROM = "volumes-from"

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
# SELinux relabel flags: accepted as docker does, meaningless without SELinux
_IGNORED_MODES = ("z", "Z", "consistent", "cached", "delegated")


@dataclass(frozen=True)
class MountSpec:
    """One mount a container asked for.

    ``source`` is a volume name (empty for an anonymous volume), a host path
    (bind), empty (tmpfs) or a container (volumes-from). ``options`` hold the
    type-specific settings: ``nocopy``, ``propagation``, ``driver``,
    ``volume-opt.<k>``, ``volume-label.<k>``, ``tmpfs`` (the mount data) and
    ``mode`` (``ro``/``rw`` for volumes-from).
    """

    type: str
    source: str = ""
    target: str = ""
    readonly: bool = False
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.type == VOLUME and self.options.get("anonymous") == "true"

    def with_options(self, **changes: str) -> MountSpec:
        return replace(self, options={**self.options, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {
            "Type": self.type,
            "Source": self.source,
            "Target": self.target,
            "ReadOnly": self.readonly,
            "Options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MountSpec:
        return cls(
            type=str(data["Type"]),
            source=str(data.get("Source", "")),
            target=str(data.get("Target", "")),
            readonly=bool(data.get("ReadOnly", False)),
            options={str(k): str(v) for k, v in dict(data.get("Options") or {}).items()},
        )


@dataclass(frozen=True)
class PreparedMount:
    """What the namespace runner mounts for one spec, decided by the mount type's plugin.

    ``fstype`` None means a bind mount of the host path ``source``; otherwise
    ``source`` is the device and ``data`` the filesystem's options (tmpfs
    ``size=64m``). ``fill_from_image`` asks the runner to copy what the
    image has at ``target`` into ``source`` first, when ``source`` is empty
    (Docker's volume pre-fill).
    """

    target: str
    source: str
    fstype: str | None = None
    data: str = ""
    flags: int = 0  # mount(2) flags beyond nosuid,nodev (noexec...), for fstype mounts
    readonly: bool = False
    propagation: str = "rprivate"
    recursive: bool = True
    fill_from_image: bool = False


def _check_target(target: str, what: str) -> str:
    if not target:
        raise InvalidArgument(f"{what}: no target path inside the container")
    if not target.startswith("/"):
        raise InvalidArgument(f"{what}: target {target!r} must be an absolute path")
    normal = os.path.normpath(target)
    if normal == "/":
        raise InvalidArgument(f"{what}: cannot mount over the container's root '/'")
    return normal


def _bind_source(source: str) -> str:
    return os.path.abspath(source)


def _is_mode(text: str) -> bool:
    """Whether ``text`` is a comma list of ``-v`` options (``ro,nocopy``)."""
    known = ("ro", "rw", "nocopy", *PROPAGATIONS, *_IGNORED_MODES)
    return all(flag in known for flag in text.split(","))


def parse_volume(text: str) -> MountSpec:
    """Docker's ``-v``: ``/data``, ``name:/data[:opts]``, ``/host:/data[:opts]``.

    ``opts`` is a comma list of ``ro``, ``rw``, ``nocopy`` and a propagation
    (``rprivate``, ``shared``...); ``z``/``Z`` are accepted and ignored.
    """
    what = f"invalid volume specification {text!r}"
    if not text:
        raise InvalidArgument("invalid empty volume spec")
    parts = text.split(":")
    if len(parts) > 1 and "" in parts:
        # as the docker CLI: ":/data" is no anonymous volume but a mistake
        raise InvalidArgument(f"invalid spec: {text}: empty section between colons")
    if len(parts) == 1:
        target, source, mode = parts[0], "", ""
    elif len(parts) == 2:
        if not parts[1].startswith("/") and _is_mode(parts[1]):
            source, target, mode = "", parts[0], parts[1]  # "/data:ro": anonymous, with options
        else:  # "data:rel" is a volume on a bad target, which the message must name
            source, target, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"{what}: write [SOURCE:]TARGET[:OPTIONS]")
    target = _check_target(target, what)
    readonly = False
    options: dict[str, str] = {}
    for flag in filter(None, mode.split(",")):
        if flag in ("ro", "rw"):
            readonly = flag == "ro"
        elif flag == "nocopy":
            options["nocopy"] = "true"
        elif flag in PROPAGATIONS:
            options["propagation"] = flag
        elif flag not in _IGNORED_MODES:
            raise InvalidArgument(f"{what}: unknown option {flag!r} (use ro, rw, nocopy, rprivate)")
    if source.startswith(("/", ".")):
        if options.get("nocopy"):
            raise InvalidArgument(f"{what}: nocopy applies to volumes, not bind mounts")
        options["create-source"] = "true"  # -v makes a missing host dir, --mount refuses
        return MountSpec(BIND, _bind_source(source), target, readonly, options)
    if "propagation" in options:
        raise InvalidArgument(f"{what}: propagation applies to bind mounts, not volumes")
    if not source:
        options["anonymous"] = "true"
    return MountSpec(VOLUME, source, target, readonly, options)


_MOUNT_KEYS = {
    "type",
    "source",
    "src",
    "target",
    "destination",
    "dst",
    "readonly",
    "ro",
    "consistency",
    "volume-nocopy",
    "volume-driver",
    "volume-opt",
    "volume-label",
    "volume-subpath",
    "bind-propagation",
    "bind-nonrecursive",
    "tmpfs-size",
    "tmpfs-mode",
}


def _flag(value: str | None, key: str, what: str) -> bool:
    if value is None:
        return True
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise InvalidArgument(f"{what}: {key}={value!r} is not a boolean (true or false)")


def parse_mount(text: str) -> MountSpec:
    """Docker's ``--mount type=volume|bind|tmpfs,source=...,target=...,...``."""
    import csv  # only --mount needs it

    what = f"invalid mount {text!r}"
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise InvalidArgument(f"{what}: write comma-separated key=value pairs") from None
    kind = VOLUME
    source = target = ""
    readonly = False
    options: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key not in _MOUNT_KEYS:
            raise InvalidArgument(f"{what}: unknown key {key!r}")
        raw = value if sep else None
        if key == "type":
            kind = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _flag(raw, key, what)
        elif key == "volume-nocopy" and _flag(raw, key, what):
            options["nocopy"] = "true"
        elif key == "volume-driver":
            options["driver"] = value
        elif key in ("volume-opt", "volume-label"):
            name, eq, val = value.partition("=")
            if not name or not eq:
                raise InvalidArgument(f"{what}: {key} needs key=value, got {value!r}")
            options[f"{key}.{name}"] = val
        elif key == "bind-propagation":
            if value not in PROPAGATIONS:
                raise InvalidArgument(f"{what}: bind-propagation must be one of {PROPAGATIONS}")
            options["propagation"] = value
        elif key == "bind-nonrecursive" and _flag(raw, key, what):
            options["nonrecursive"] = "true"
        elif key in ("tmpfs-size", "tmpfs-mode"):
            options[key] = value
        elif key == "volume-subpath":
            raise InvalidArgument(f"{what}: volume-subpath is not supported")
    if kind not in (VOLUME, BIND, TMPFS):
        raise InvalidArgument(f"{what}: type must be volume, bind or tmpfs, not {kind!r}")
    target = _check_target(target, what)
    prefixes = {VOLUME: ("nocopy", "driver", "volume-"), BIND: ("propagation", "nonrecursive")}
    prefixes[TMPFS] = ("tmpfs-",)
    for key in options:
        if not key.startswith(prefixes[kind]):
            raise InvalidArgument(f"{what}: option {key!r} does not apply to type {kind}")
    if kind == BIND:
        if not source:
            raise InvalidArgument(f"{what}: a bind mount needs source=/host/path")
        return MountSpec(BIND, _bind_source(source), target, readonly, options)
    if kind == TMPFS:
        if source:
            raise InvalidArgument(f"{what}: a tmpfs mount takes no source")
        data = _tmpfs_data(options.pop("tmpfs-size", ""), options.pop("tmpfs-mode", ""), what)
        return MountSpec(TMPFS, "", target, readonly, {"tmpfs": data} if data else {})
    if not source:
        options["anonymous"] = "true"
    return MountSpec(VOLUME, source, target, readonly, options)


def _tmpfs_data(size: str, mode: str, what: str) -> str:
    data = []
    if size:
        if not size.rstrip("kmgKMG").isdigit():
            raise InvalidArgument(f"{what}: tmpfs-size {size!r} is not a size such as 64m")
        data.append(f"size={size}")
    if mode:
        try:
            int(mode, 8)
        except ValueError:
            raise InvalidArgument(f"{what}: tmpfs-mode {mode!r} is not octal, e.g. 1777") from None
        data.append(f"mode={mode}")
    return ",".join(data)


_TMPFS_OPTIONS = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks")
_TMPFS_FLAGS = ("ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev")


def parse_tmpfs(text: str) -> MountSpec:
    """Docker's ``--tmpfs /run[:size=64m,mode=1777,ro,noexec]``."""
    what = f"invalid tmpfs {text!r}"
    target, _, opts = text.partition(":")
    target = _check_target(target, what)
    readonly = False
    data: list[str] = []
    for item in filter(None, opts.split(",")):
        key = item.partition("=")[0]
        if item in ("ro", "rw"):
            readonly = item == "ro"
        elif item in _TMPFS_FLAGS or (key in _TMPFS_OPTIONS and "=" in item):
            data.append(item)
        else:
            raise InvalidArgument(f"{what}: unknown tmpfs option {item!r}")
    return MountSpec(TMPFS, "", target, readonly, {"tmpfs": ",".join(data)} if data else {})


def parse_volumes_from(text: str) -> MountSpec:
    """Docker's ``--volumes-from CONTAINER[:ro|:rw]``."""
    name, sep, mode = text.partition(":")
    if not name or (sep and mode not in ("ro", "rw")):
        raise InvalidArgument(f"invalid --volumes-from {text!r}: write CONTAINER[:ro|:rw]")
    return MountSpec(VOLUMES_FROM, name, "", mode == "ro", {"mode": mode} if mode else {})


def parse_all(
    volumes: Sequence[str] = (),
    mounts: Sequence[str] = (),
    tmpfs: Sequence[str] = (),
    volumes_from: Sequence[str] = (),
) -> list[MountSpec]:
    """Every mount flag of one container; two mounts on the same target are refused."""
    specs = [parse_volumes_from(v) for v in volumes_from]
    specs += [parse_volume(v) for v in volumes]
    specs += [parse_mount(m) for m in mounts]
    specs += [parse_tmpfs(t) for t in tmpfs]
    check_distinct_targets(specs)
    return specs


def check_distinct_targets(specs: Sequence[MountSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if not spec.target:
            continue
        if spec.target in seen:
            raise InvalidArgument(f"duplicate mount point: {spec.target}")
        seen.add(spec.target)
