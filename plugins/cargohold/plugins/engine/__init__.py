"""The Engine-API daemon: the unchanged docker CLI against cargohold.

``cargohold daemon -H unix:///PATH`` serves the part of Docker's Engine API
the docker CLI needs for volumes, containers (run, exec, logs, stop...) and
images. Modules: `daemon` (the command and its warm shim launcher),
`server` (a threaded HTTP/1.1 server on h11 that can hijack connections),
`app` (the Flask app: versions, headers, errors, system routes), the route
modules `volumes`, `containers`, `execs`, `images`, `streams` (Docker's
stream framing) and `convert` (the Engine API's shapes of core records).

Only click is imported when every command loads this plugin; the rest when
the daemon starts.
"""

from __future__ import annotations

import click

from cargohold.core import hookimpl


@click.command("daemon")
@click.option(
    "-H", "--host", "host", default="unix:///run/cargohold.sock", show_default=True,
    help="where to listen: unix:///PATH",
)  # fmt: skip
@click.option(
    "--cold-start", is_flag=True, help="start each container's supervisor as a new interpreter"
)
def daemon_command(host: str, cold_start: bool) -> None:
    """Serve the Docker Engine API to the docker CLI.

    Containers, images and volumes, on a unix socket (DOCKER_HOST=unix://...).
    """
    from cargohold.plugins.engine.command import serve

    serve(host, cold_start=cold_start)


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    group.add_command(daemon_command)
