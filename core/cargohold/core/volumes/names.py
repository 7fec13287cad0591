"""Volume names: Docker's rules, checked once, before anything touches disk."""

from __future__ import annotations

import re

from cargohold.core.api.errors import InvalidArgument

# Docker's local driver rule: at least two characters, no separators, so a
# name is always a single safe path component.
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# A path component longer than this cannot exist on Linux filesystems.
MAX_NAME_LENGTH = 255


def validate_volume_name(name: object) -> str:
    """Return ``name`` if it is a valid volume name, else raise `InvalidArgument`."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("volume name is empty: give a name such as 'data'")
    shown = name if len(name) <= 40 else name[:40] + "..."
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"volume name {shown!r} is {len(name)} characters long: the limit is {MAX_NAME_LENGTH}"
        )
    if not _VOLUME_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid volume name {shown!r}: names are at least two characters, "
            "start with a letter or digit, and use only [a-zA-Z0-9_.-]"
        )
    return name


def anonymous_volume_name() -> str:
    """A fresh name for an anonymous volume: 64 hex digits, as Docker makes them."""
    import secrets  # (hashlib and random behind it: not for every command's start-up)

    return secrets.token_hex(32)


def is_anonymous_name(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


_DRIVER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def validate_driver_name(name: object) -> str:
    """Driver names become file names (plugin sockets, data areas): keep them one component."""
    if not isinstance(name, str) or not _DRIVER_NAME.fullmatch(name) or ".." in name:
        raise InvalidArgument(
            f"invalid driver name {name!r}: use letters, digits and _.- (at most 128)"
        )
    return name
