"""``cargohold serve`` and ``cargohold plugin status``: the commands of served plugins.

This module is the plugin's entry point, imported by every ``cargohold``
command: the server's modules are imported only when a server actually starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cargohold.core import InvalidArgument, hookimpl
from cargohold.core.cli import emit_json, runtime, table
from cargohold.core.volumes.names import validate_driver_name

if TYPE_CHECKING:
    from cargohold.plugins.docker.listen import TlsFiles
    from cargohold.plugins.docker.server import PluginServer


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    from cargohold.plugins.docker.stale import unmount_command

    group.add_command(serve_command)
    plugin_group = group.commands.get("plugin")
    if isinstance(plugin_group, click.Group):
        plugin_group.add_command(status_command)
    volume_group = group.commands.get("volume")
    if isinstance(volume_group, click.Group):
        volume_group.add_command(unmount_command)


@click.command("serve")
@click.argument("drivers", nargs=-1, required=True)
@click.option(
    "--name",
    help="plugin name the engine uses with -d (one driver only; default cargohold-DRIVER)",
)
@click.option(
    "--socket-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="where the unix socket goes (default /run/docker/plugins)",
)
@click.option("--tcp", "tcp", metavar="HOST:PORT", help="listen on TCP and write a spec file")
@click.option(
    "--spec-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="where the .spec/.json file goes with --tcp (default /etc/docker/plugins)",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="server cert")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="server key")
@click.option(
    "--tls-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA for client certificates: clients without one signed by it are refused",
)
@click.option(
    "--tls-client-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="certificate the engine presents (written to the .json file)",
)
@click.option(
    "--tls-client-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="key of --tls-client-cert (written to the .json file)",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_command(
    drivers: tuple[str, ...],
    name: str | None,
    socket_dir: Path | None,
    tcp: str | None,
    spec_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    tls_client_cert: Path | None,
    tls_client_key: Path | None,
    log_level: str,
) -> None:
    """Serve volume DRIVERS to the Docker engine as volume plugins.

    Until SIGTERM or SIGINT. Each driver becomes plugin cargohold-DRIVER (or --name), on
    /run/docker/plugins/NAME.sock, or on TCP with a spec file. Then:
    docker volume create -d cargohold-local myvol.
    """
    import logging

    from cargohold.plugins.docker import server as plugin_server

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if name is not None and len(drivers) > 1:
        raise click.UsageError("--name names one plugin: serve one driver with it")
    if len(set(drivers)) != len(drivers):
        raise click.UsageError("a driver is named twice")
    plugins = [
        (validate_driver_name(d), validate_driver_name(name or plugin_server.default_name(d)))
        for d in drivers
    ]
    if any(plugin == "local" for _, plugin in plugins):
        raise InvalidArgument("plugin name 'local' is Docker's built-in driver: pick another")
    tls = _tls_files(tls_cert, tls_key, tls_ca, tls_client_cert, tls_client_key)
    if tls is not None and tcp is None:
        raise click.UsageError("TLS needs --tcp: a unix socket is protected by its file mode")
    where = plugin_server.ListenOn(
        socket_dir=socket_dir.absolute() if socket_dir else None,
        spec_dir=spec_dir.absolute() if spec_dir else None,
        tcp=_host_port(tcp) if tcp else None,
        tls=tls,
    )
    if where.tcp is not None and (tls is None or tls.ca is None) and not _loopback(where.tcp[0]):
        logging.getLogger(__name__).warning(
            "serving on %s:%s without client certificates: anyone who can reach it can "
            "create, mount and remove volumes. Use --tls-ca, or listen on 127.0.0.1",
            *where.tcp,
        )

    def ready(servers: list[PluginServer]) -> None:
        for server in servers:
            click.echo(f"serving driver {server.driver} as plugin {server.name} at {server.url}")

    plugin_server.serve(runtime(), plugins, where, ready=ready)


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{text!r}: write HOST:PORT, such as 127.0.0.1:7890")
    return host.strip("[]") or "127.0.0.1", int(port)


def _tls_files(
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
) -> TlsFiles | None:
    if not any((cert, key, ca, client_cert, client_key)):
        return None
    if cert is None or key is None:
        raise click.UsageError("TLS needs both --tls-cert and --tls-key")
    if (client_cert is None) != (client_key is None):
        raise click.UsageError("give --tls-client-cert and --tls-client-key together")
    from cargohold.plugins.docker.listen import TlsFiles

    def absolute(p: Path | None) -> Path | None:
        return p.absolute() if p is not None else None

    return TlsFiles(
        cert.absolute(),
        key.absolute(),
        absolute(ca),
        absolute(client_cert),
        absolute(client_key),
    )


# -- plugin status -------------------------------------------------------------


@click.command("status")
@click.argument("target", metavar="NAME|SOCKET")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def status_command(target: str, fmt: str) -> None:
    """Show a cargohold plugin server's volumes, mounts and errors."""
    from cargohold.plugins.docker.health import fetch_status

    report = fetch_status(target)
    if fmt == "json":
        emit_json(report)
        return
    # Everything below came over a socket, and names and paths in it from any
    # client of the plugin: escape what a terminal would act on, and cut the long.
    served = ", ".join(f"{_cell(s['plugin'])} ({_cell(s['driver'])})" for s in report["served"])
    click.echo(
        f"plugin {_cell(report['plugin'])}: driver {_cell(report['driver'])}, "
        f"pid {_cell(report['pid'])}, at {_cell(report['address'], 200)}, "
        f"up {float(report['uptime_seconds']):.0f} s"
    )
    click.echo(f"this process serves: {served}")
    calls = ", ".join(f"{_cell(m)} {n}" for m, n in sorted(report["requests"].items())) or "none"
    missing = sum(int(n) for n in (report.get("no_such_volume") or {}).values())
    click.echo(
        f"requests: {calls}; errors: {report['error_count']}; no such volume: {missing} "
        "(the engine asks Get before each Create, so these are routine)"
    )
    click.echo()
    volumes = report["volumes"]
    if volumes:
        table(
            [[_cell(v["name"]), str(v["ref_count"]), _cell(v["mountpoint"], 200)] for v in volumes],
            ["VOLUME", "REFS", "MOUNTPOINT"],
        )
    else:
        click.echo("no volumes")
    mounts = report["active_mounts"]
    if mounts:
        click.echo()
        table(
            [[_cell(m["volume"]), _cell(m["id"]), str(m["count"])] for m in mounts],
            ["MOUNTED VOLUME", "MOUNT ID", "COUNT"],
        )
        # an engine that crashed never unmounts what its lost containers mounted
        click.echo(
            "mounts no container uses any more (after an engine crash) are released with: "
            "cargohold volume unmount VOLUME --id MOUNT_ID (or --all)"
        )
    if report["last_errors"]:
        click.echo()
        table(
            [
                [
                    _cell(e["time"]),
                    _cell(e["method"]),
                    _cell(e["volume"] or "-"),
                    _cell(e["error"], ERROR_WIDTH),
                ]
                for e in report["last_errors"]
            ],
            ["TIME", "CALL", "VOLUME", "ERROR"],
        )


#: Widest cell of a name, call or mount id (a 64-hex mount id fits whole).
CELL_WIDTH = 64
ERROR_WIDTH = 300


def _cell(value: object, limit: int = CELL_WIDTH) -> str:
    """``value`` for one table cell: control and other unprintable characters
    escaped as Python writes them (a NUL as \\x00), and cut to ``limit``."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
