"""``cargohold daemon -H unix:///PATH``: the Engine API for the docker CLI.

One long-lived process: the runtime stays warm, requests are served
concurrently (a thread per connection), containers are started under warm
detached supervisors that outlive the daemon, and a restarted daemon reads
them back from the container store. SIGTERM stops serving and removes the
socket; the containers keep running.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import click

from cargohold.core.api.errors import InvalidArgument
from cargohold.plugins.http.sockets import MAX_UNIX_PATH, claim_unix_socket


def socket_path(host: str) -> Path:
    """``unix:///run/cargohold.sock`` -> the path; other schemes are refused."""
    parts = urlsplit(host)
    if parts.scheme != "unix" or not parts.path:
        raise InvalidArgument(f"-H {host!r}: give unix:///absolute/path.sock")
    path = Path(parts.path)
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise InvalidArgument(f"-H {host!r}: unix socket paths are limited to 107 bytes")
    return path


def serve(host: str, *, cold_start: bool = False) -> None:
    """``cargohold daemon``: serve on ``host`` until SIGTERM (or ^C)."""
    import signal
    import socket

    from cargohold.core.cli import runtime
    from cargohold.core.plugin.manager import PluginManager

    path = socket_path(host)
    claim_unix_socket(
        path, kind="daemon socket", remedy="stop it, or pick another -H", make_parent=True
    )
    root = click.get_current_context().find_root()
    launcher = None
    if not cold_start:  # forked before any thread or database exists
        from cargohold.plugins.engine.launcher import WarmLauncher

        pm = root.obj if isinstance(root.obj, PluginManager) else None
        state = root.params.get("state_dir")
        rt_dir = Path(state) if state else None
        if pm is not None:
            from cargohold.core.state.paths import default_state_dir

            launcher = WarmLauncher((rt_dir or default_state_dir()).absolute(), pm)
    from cargohold.plugins.engine.app import create_app
    from cargohold.plugins.engine.server import Server

    rt = runtime()
    if launcher is not None:
        rt.containers.supervisor.launcher = launcher
    app = create_app(rt)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # bound and listening under a side name, then renamed into place: a client that
    # sees the socket can connect (no window between bind and listen)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    if len(os.fsencode(staging)) > MAX_UNIX_PATH:
        staging = path.with_name(f".{os.getpid()}")
    staging.unlink(missing_ok=True)
    listener.bind(str(staging))
    os.chmod(staging, 0o660)
    listener.listen(128)
    os.rename(staging, path)
    server = Server(listener, app)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"cargohold daemon listening on unix://{path}", err=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if launcher is not None:
            launcher.close()
