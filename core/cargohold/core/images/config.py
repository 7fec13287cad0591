"""Image references and image configs: parsing names, building and changing configs."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cargohold.core.api.clock import utc_now
from cargohold.core.api.errors import InvalidArgument

if TYPE_CHECKING:
    from cargohold.core.images.records import Image

# Docker's reference grammar, simplified: lowercase path components with
# separators, optional registry host[:port], tag of up to 128 word characters.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
_REFERENCE = re.compile(
    rf"(?P<name>{_HOST}{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
)


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"{what} is not valid JSON: {err}") from None


def normalize_reference(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/x:1`` -> ``x:1``.

    Raises `InvalidArgument` for text that is not a reference.
    """
    match = _REFERENCE.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None or len(ref) > 255:
        raise InvalidArgument(
            f"invalid reference format {ref!r}: write name[:tag] in lowercase, e.g. busybox:latest"
        )
    name = match.group("name")
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return f"{name}:{match.group('tag') or 'latest'}"


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain id of each layer stack, bottom first."""
    if len(diff_ids) < 2:
        return list(diff_ids)  # a one-layer image (most runs): no digest, no hashlib
    import hashlib

    chains = [diff_ids[0]]
    for diff_id in diff_ids[1:]:
        digest = hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
        chains.append(f"sha256:{digest}")
    return chains


def host_architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def dump_config(config: Mapping[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def new_config(
    run_config: Mapping[str, Any],
    diff_ids: Sequence[str],
    *,
    created_by: str,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An image config (OCI/Docker JSON) with ``run_config`` and these layers."""
    stamp = utc_now()
    history = list((base or {}).get("history") or [])
    history.append({"created": stamp, "created_by": created_by})
    return {
        "architecture": (base or {}).get("architecture") or host_architecture(),
        "os": "linux",
        "created": stamp,
        "config": dict(run_config),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }


_CHANGE_KEYS = {
    "CMD": "Cmd",
    "ENTRYPOINT": "Entrypoint",
    "ENV": "Env",
    "WORKDIR": "WorkingDir",
    "USER": "User",
    "VOLUME": "Volumes",
    "LABEL": "Labels",
    "STOPSIGNAL": "StopSignal",
}


def apply_changes(run_config: Mapping[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """Apply Dockerfile-like ``--change`` instructions to a ``config`` section."""
    result = dict(run_config)
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        instruction = word.upper()
        rest = rest.strip()
        if instruction not in _CHANGE_KEYS or not rest:
            raise InvalidArgument(
                f"unsupported change {change!r}: use one of {', '.join(_CHANGE_KEYS)} "
                "followed by its value"
            )
        key = _CHANGE_KEYS[instruction]
        if instruction in ("CMD", "ENTRYPOINT", "VOLUME"):
            values = _json_or_shell(rest, shell=instruction != "VOLUME")
            if instruction == "VOLUME":
                result[key] = {**(result.get(key) or {}), **{v: {} for v in values}}
            else:
                result[key] = values
        elif instruction in ("ENV", "LABEL"):
            pairs = _pairs(rest)
            if instruction == "ENV":
                env = [e for e in result.get("Env") or [] if e.split("=", 1)[0] not in pairs]
                result["Env"] = env + [f"{k}={v}" for k, v in pairs.items()]
            else:
                result["Labels"] = {**(result.get("Labels") or {}), **pairs}
        else:
            result[key] = rest
    return result


def _json_or_shell(text: str, *, shell: bool) -> list[str]:
    if text.startswith("["):
        value = parse_json(text.encode(), f"instruction value {text!r}")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{text!r} must be a JSON list of strings")
        return value
    return ["/bin/sh", "-c", text] if shell else text.split()


def _pairs(text: str) -> dict[str, str]:
    import shlex  # only builds and commits parse instructions

    words = shlex.split(text)
    if len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # legacy "ENV key value"
    result: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad key=value {word!r} in {text!r}")
        result[key] = value
    return result


@dataclass(frozen=True)
class ContainerConfig:
    """The parts of an image's config a container starts from."""

    id: str
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    volumes: tuple[str, ...] = ()


def container_config(image: Image) -> ContainerConfig:
    """What a container takes from ``image``: Env, Cmd, Entrypoint, WorkingDir, User, Volumes."""
    return ContainerConfig(
        id=image.id,
        env=tuple(image.env),
        cmd=tuple(image.cmd),
        entrypoint=tuple(image.entrypoint),
        workdir=image.working_dir,
        user=image.user,
        volumes=tuple(image.volumes),
    )
