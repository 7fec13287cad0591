"""Container names and host names: Docker's rules, and random names."""

from __future__ import annotations

import os
import re

from cargohold.core.api.errors import InvalidArgument

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_HOSTNAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}")


def check_name(name: str) -> str:
    """``name`` without a leading ``/``; `InvalidArgument` if Docker would refuse it."""
    name = name.lstrip("/")
    if not _NAME.fullmatch(name) or len(name) > 255:
        raise InvalidArgument(
            f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
            "at least two characters"
        )
    return name


def check_hostname(hostname: str) -> str:
    if not _HOSTNAME.fullmatch(hostname):
        raise InvalidArgument(
            f"invalid hostname {hostname!r}: letters, digits, '.' and '-', at most 63"
        )
    return hostname


_ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "quiet", "sharp", "tidy", "wise")
_NOUNS = ("anchor", "barge", "cargo", "dock", "hold", "keel", "mast", "pier", "quay", "sail")


def random_name() -> str:
    """``calm_dock_3f9a1c``: two words and six hex digits (os.urandom: `secrets` costs start-up)."""
    raw = os.urandom(5)
    return (
        f"{_ADJECTIVES[raw[0] % len(_ADJECTIVES)]}_{_NOUNS[raw[1] % len(_NOUNS)]}_{raw[2:].hex()}"
    )
