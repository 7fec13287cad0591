"""The child process behind ``served:NAME`` targets and the protocol's no-op floor.

``python -m cargohold.plugins.bench.served SOCKET_DIR DRIVER...`` serves each
driver as plugin ``chbench-DRIVER`` and a no-op plugin ``chbench-noop`` (the
same server and app, whose ``Bench.Noop`` handler does nothing) on
unix sockets in SOCKET_DIR, prints ``ready``, and stops when its stdin closes.
The servers live apart from the bench, as a plugin lives apart from the engine,
so the client's work does not compete with theirs for the GIL.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cargohold.core import VolumeService
    from cargohold.plugins.docker.app import PluginApp
    from cargohold.plugins.docker.health import Health

NOOP_METHOD = "Bench.Noop"


def with_noop(volumes: VolumeService, driver: str, health: Health) -> PluginApp:
    """The plugin's own app plus a handler that does nothing: same stack, no work."""
    from cargohold.plugins.docker.app import PluginApp

    app = PluginApp(volumes, driver, health)
    app.add(NOOP_METHOD, lambda body: {"Err": ""})
    return app


def main(argv: list[str]) -> None:
    from cargohold.core import Runtime
    from cargohold.plugins.bench.targets import NOOP_PLUGIN, served_plugin_name
    from cargohold.plugins.docker.server import ListenOn, PluginServer

    sockets = Path(argv[0])
    sockets.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="state-", dir=sockets.parent))
    servers: list[PluginServer] = []
    try:
        with Runtime(state) as runtime:
            plugins = [(d, served_plugin_name(d)) for d in argv[1:]] + [("local", NOOP_PLUGIN)]
            for driver, name in plugins:
                server = PluginServer(
                    runtime.volumes, driver, name, ListenOn(socket_dir=sockets),
                    app_factory=with_noop,
                )  # fmt: skip
                server.start()
                servers.append(server)
            print("ready", flush=True)
            sys.stdin.read()
            for server in reversed(servers):
                server.stop()
            servers.clear()
    except BaseException as err:
        print(f"failed: {err}", flush=True)
        raise
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
