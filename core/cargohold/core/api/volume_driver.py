"""The volume-driver contract.

Glossary
--------
volume
    A named store of bytes that a container sees as a directory.
driver
    The code that stores a volume's bytes (a `VolumeDriver`). It owns bytes
    only; names, metadata, labels, references and locks belong to the core's
    `VolumeService`.
mount id
    An opaque string naming one user of a mounted volume (Docker uses one
    random 64-hex id per container mountpoint). The core counts references
    per (volume, mount id); a driver only hears the first mount and the last
    unmount.
options
    ``-o key=value`` pairs given at create time. Each driver declares the
    options it takes (`Option`); the core validates and converts them before
    the driver sees them, and resolves secret options from references such as
    ``env:NAME``.
scope
    ``local``: a volume exists on one host. ``global``: the same volume is
    visible from every host using the driver (a cloud share, say).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from cargohold.core.api.errors import InvalidArgument, NotSupported

Scope = Literal["local", "global"]

# Options every driver spells the same way, so users learn them once.
SHARED_OPTION_NAMES = ("size", "from", "snapshot", "readonly")

_SIZE = re.compile(r"(\d+)\s*([kmgtp]?)(i?b?)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size(text: str) -> int:
    """``"10g"``, ``"512MiB"``, ``"4096"`` -> bytes (binary units, as Docker)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size: use a number with k, m, g or t")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on", ""):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean: use true or false")


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "bool": parse_bool,
    "size": parse_size,
}


@dataclass(frozen=True)
class Option:
    """One option a driver accepts at create time.

    ``type`` is one of ``str``, ``int``, ``bool`` (``true``/``false``, a bare
    key means true) and ``size`` (bytes, written ``10g`` or ``512MiB``).
    A ``secret`` option takes a reference (``env:NAME``, ``file:/path``, or
    any scheme a plugin resolves), never the secret itself: the core stores
    the reference and hands the driver the resolved value.
    """

    name: str
    type: Literal["str", "int", "bool", "size"] = "str"
    default: Any = None
    required: bool = False
    secret: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()

    def convert(self, raw: str) -> Any:
        """Turn the text a user gave into the value the driver receives."""
        if self.choices and raw not in self.choices:
            raise InvalidArgument(
                f"option {self.name}={raw!r} is not one of: {', '.join(self.choices)}"
            )
        try:
            return _CONVERTERS[self.type](raw)
        except ValueError as err:
            raise InvalidArgument(f"option {self.name}: {err}") from None


# Small value records are NamedTuples: a frozen dataclass costs every command ~1 ms to define.
class Capabilities(NamedTuple):
    """What a driver can do beyond the required methods."""

    snapshot: bool = False
    clone: bool = False
    resize: bool = False
    usage: bool = False


class DriverContext(NamedTuple):
    """What the core hands a driver when it builds one.

    ``root`` is the driver's own data area (created, private to it); a driver
    keeps nothing outside it unless an option points there explicitly.
    ``hook`` is the runtime's pluggy hook relay, for drivers that need it.
    """

    root: Path
    hook: Any = None


@dataclass(frozen=True)
class DriverVolume:
    """What a driver reports about one of its volumes."""

    name: str
    mountpoint: Path | None = None
    status: Mapping[str, Any] = field(default_factory=dict)


class VolumeDriver(abc.ABC):
    """Base class of every volume driver.

    A subclass sets `name`, and usually `options`; it implements the six
    abstract methods. Every method may assume the name is valid, the options
    have been checked and converted, and no other call for the same volume is
    running (the core holds the volume's lock). Methods acting on one volume
    receive its options (``opts``), secrets resolved: the core keeps them, so
    a driver need not.
    """

    #: The name users pass to ``-d``.
    name: ClassVar[str]
    scope: ClassVar[Scope] = "local"
    #: The options `create` accepts; anything else is refused by the core.
    options: ClassVar[tuple[Option, ...]] = ()
    #: Pass options not in `options` through as strings instead of refusing
    #: them: for drivers that cannot declare theirs (a remote Docker plugin).
    accepts_any_option: ClassVar[bool] = False
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: Options of a plain volume, shown by ``-o help`` and used by ``cargohold
    #: driver check``; ``{tmp}`` in a value stands for a fresh empty directory.
    example_options: ClassVar[Mapping[str, str]] = {}
    #: False when a volume's data outlives the volume (a bind volume's directory).
    removes_data: ClassVar[bool] = True

    def __init__(self, context: DriverContext) -> None:
        self.context = context

    @property
    def root(self) -> Path:
        return self.context.root

    @abc.abstractmethod
    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        """Make the volume. Creating one that already exists must succeed."""

    @abc.abstractmethod
    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        """Delete the volume and its data. Raise `NotFound` if it does not exist."""

    @abc.abstractmethod
    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        """Make the volume's data available and return the host directory holding it.

        Called for the first reference only; the core counts the others. After
        a crash it may be called again for a volume that is still mounted:
        return the same path.
        """

    @abc.abstractmethod
    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        """Release what `mount` set up. Called when the last reference goes."""

    @abc.abstractmethod
    def get(self, name: str) -> DriverVolume:
        """Report one volume. Raise `NotFound` if it does not exist."""

    @abc.abstractmethod
    def list(self) -> list[DriverVolume]:
        """Report every volume the driver holds."""

    # Optional capabilities: declare them in `capabilities` and override.
    def snapshot(self, name: str, snapshot: str) -> None:
        raise NotSupported(f"driver {self.name!r} cannot snapshot volumes")

    def clone(self, source: str, name: str) -> None:
        raise NotSupported(f"driver {self.name!r} cannot clone volumes")

    def resize(self, name: str, size: int) -> None:
        raise NotSupported(f"driver {self.name!r} cannot resize volumes")

    def usage(self, name: str) -> int:
        """Bytes the volume uses."""
        raise NotSupported(f"driver {self.name!r} cannot report usage")

    def close(self) -> None:  # noqa: B027 - optional, most drivers hold nothing
        """Release connections and background work; the runtime is shutting down."""
