"""The child process behind ``served:NAME`` targets and the protocol's no-op floor.

``python -m cargohold.plugins.bench.served SOCKET_DIR DRIVER...`` serves each
driver as plugin ``chbench-DRIVER`` and a no-op plugin ``chbench-noop`` (the
same Flask and waitress stack, whose ``Bench.Noop`` handler does nothing) on
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
    from flask import Flask

    from cargohold.core import VolumeService
    from cargohold.plugins.docker.health import Health

NOOP_METHOD = "Bench.Noop"


def with_noop(volumes: VolumeService, driver: str, health: Health) -> Flask:
    """The plugin's own app plus a handler that does nothing: same stack, no work."""
    from cargohold.plugins.docker.app import _endpoint, create_app

    app = create_app(volumes, driver, health)
    app.add_url_rule(
        f"/{NOOP_METHOD}",
        endpoint=NOOP_METHOD,
        view_func=_endpoint(NOOP_METHOD, lambda body: {"Err": ""}, health),
        methods=["POST"],
    )
    return app


def main(argv: list[str]) -> None:
    import logging

    from cargohold.core import Runtime
    from cargohold.plugins.bench.targets import NOOP_PLUGIN, served_plugin_name
    from cargohold.plugins.docker.server import ListenOn, PluginServer

    # waitress warns of queued requests: expected when the bench sends many at once
    logging.getLogger("waitress").setLevel(logging.ERROR)
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
