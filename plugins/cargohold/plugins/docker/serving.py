"""Old name of `cargohold.plugins.docker.server`, kept while code still imports it.

The plugin server moved to ``server.py`` (the commands are in ``cli.py``);
``plugins/bench/served.py`` imports this name. Remove once nothing does.
"""

from cargohold.plugins.docker.server import ListenOn, PluginServer, default_name, serve

__all__ = ["ListenOn", "PluginServer", "default_name", "serve"]
