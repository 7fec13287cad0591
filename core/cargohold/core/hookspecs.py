"""Every hook cargohold calls, in one place.

Plugins implement these with ``@cargohold.core.hookimpl``. Each docstring is
the hook's reference documentation; ``docs/hooks.md`` repeats every hook and a
test keeps the two in step.

Hooks fall into four kinds:

registration
    a plugin tells the core what it provides (drivers);
policy
    a plugin may veto an operation by raising `CargoholdError`;
resolution
    the first plugin that knows the answer gives it (``firstresult``);
observation and extension
    plugins hear about events, add commands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from cargohold.core.driver import DriverContext, VolumeDriver
    from cargohold.core.events import VolumeEvent

PROJECT = "cargohold"
hookspec = pluggy.HookspecMarker(PROJECT)


# -- registration ------------------------------------------------------------


@hookspec
def cargohold_volume_drivers() -> Sequence[type[VolumeDriver]]:
    """Return the volume-driver classes this plugin provides.

    The core builds each driver lazily, on first use, as ``cls(context)``
    with a `DriverContext` whose ``root`` is the driver's private data area.
    Keep this hook cheap: import heavy SDKs inside the driver module, which
    this hook imports only when called. Two plugins providing the same driver
    name is an error reported when drivers are collected.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def cargohold_find_volume_driver(name: str, context: DriverContext) -> VolumeDriver | None:
    """Build a driver named ``name`` that no plugin registered, or return None.

    Asked only when ``name`` is not among the classes from
    `cargohold_volume_drivers`: this is how drivers found at run time (a
    Docker volume plugin's socket, say) join the registry. ``context.root`` is
    the data area the driver would get. The first non-None answer wins and is
    kept for the runtime's life.
    """


# -- policy ------------------------------------------------------------------


@hookspec
def cargohold_validate_volume(name: str, driver: str, opts: Mapping[str, Any]) -> None:
    """Veto the creation of volume ``name`` by raising a `CargoholdError`.

    Called after the driver's declared options have been checked and
    converted (``opts`` holds the converted values; secret options still hold
    their references, never the secret) and before the driver is called.
    Raise `InvalidArgument` or `Conflict` with a message that says what to
    change. Return value is ignored.
    """


# -- resolution --------------------------------------------------------------


@hookspec(firstresult=True)
def cargohold_resolve_secret(ref: str) -> str | None:
    """Turn a secret reference into the secret, or return None if not yours.

    ``ref`` is the text a user gave for a secret option, such as
    ``env:S3_SECRET`` or ``file:/run/secrets/key``. Built in: ``env:NAME`` and
    ``file:/path``. Recognise your own scheme by its prefix and return the
    value; raise `NotFound` if the scheme is yours but the secret is missing.
    The first non-None answer wins. The core never stores or prints the
    returned value.
    """


# -- observation -------------------------------------------------------------


@hookspec
def cargohold_volume_event(event: VolumeEvent) -> None:
    """Hear about a volume operation that has just succeeded.

    ``event.action`` is one of ``create``, ``remove``, ``mount``, ``unmount``
    and ``prune``. Called synchronously after the volume's lock is released;
    keep it quick and do not raise (errors are logged and ignored).
    """


# -- extension ---------------------------------------------------------------


@hookspec
def cargohold_cli(group: click.Group) -> None:
    """Add commands or command groups to the ``cargohold`` command line.

    Called once when the CLI starts, with the top-level `click.Group`. Use
    ``group.add_command`` or look up an existing subgroup with
    ``group.commands["volume"]``. Commands reach the runtime through
    ``click.get_current_context().find_object(Runtime)``... or simply
    ``cargohold.core.cli.runtime()``.
    """
