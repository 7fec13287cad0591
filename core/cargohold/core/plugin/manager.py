"""Building a plugin manager for one runtime.

Plugins are found through the ``cargohold`` entry-point group, the same way
for built-in and third-party plugins. Two environment variables steer it:

``CARGOHOLD_DISABLE_PLUGIN_AUTOLOAD``
    set to anything non-empty: load only cargohold's own plugins, no
    third-party entry points (as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``).
``CARGOHOLD_BLOCK_PLUGINS``
    comma-separated plugin names (entry-point names) never to load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pluggy

from cargohold.core.api import hookspecs
from cargohold.core.api.errors import CargoholdError
from cargohold.core.plugin.entrypoints import group_entries

ENTRY_POINT_GROUP = "cargohold"
DISTRIBUTION = "cargohold"
AUTOLOAD_ENV = "CARGOHOLD_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "CARGOHOLD_BLOCK_PLUGINS"
HOOK_PREFIX = "cargohold_"


class PluginError(CargoholdError):
    """A plugin cannot be loaded: it fails to import or implements a hook wrongly."""


def blocked_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        #: plugin name -> "distribution version", for plugins from entry points
        self.origins: dict[str, str] = {}

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        # Every command registers every plugin, and pluggy inspects each name a
        # plugin module or object has: looking only at names that can be hooks
        # keeps that off start-up. A hook implementation is named after its hook.
        if not name.startswith(HOOK_PREFIX):
            return None
        return super().parse_hookimpl_opts(plugin, name)


def build_plugin_manager(
    *,
    autoload: bool | None = None,
    blocked: Iterable[str] = (),
    plugins: Iterable[object] = (),
) -> PluginManager:
    """A fresh manager with every hook spec and the plugins that apply.

    ``autoload`` None follows the environment; False loads only cargohold's
    own entry points. ``plugins`` are extra plugin objects (modules or
    instances) registered after the entry points, as tests and embedders need.
    """
    pm = PluginManager()
    if autoload is None:
        autoload = not os.environ.get(AUTOLOAD_ENV)
    blocked_names = set(blocked) | blocked_from_env()
    for name in blocked_names:
        pm.set_blocked(name)

    for ep in group_entries(ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        is_own = ep.dist_name == DISTRIBUTION
        if not (autoload or is_own):
            continue
        origin = f"{ep.dist_name} {ep.dist_version}" if ep.dist_name else ep.value
        try:
            pm.register(ep.load(), name=ep.name)
        except (ImportError, pluggy.PluginValidationError) as err:
            raise PluginError(_broken(ep.name, origin, err)) from err
        pm.origins[ep.name] = origin
    for plugin in plugins:
        try:
            pm.register(plugin)
        except pluggy.PluginValidationError as err:
            raise PluginError(_broken(repr(plugin), "given to the runtime", err)) from err
    # Every hookimpl must match a spec: a typo'd hook name fails here, early.
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        name = pm.get_name(err.plugin) or repr(err.plugin)
        raise PluginError(_broken(name, pm.origins.get(name, "given to the runtime"), err)) from err
    return pm


def _broken(name: str, origin: str, err: Exception) -> str:
    return (
        f"plugin {name} ({origin}) cannot be loaded: {err}. "
        f"Fix or upgrade it, or skip it with {BLOCK_ENV}={name}"
    )
