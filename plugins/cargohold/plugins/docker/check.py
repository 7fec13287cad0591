"""``cargohold plugin check``: the protocol conformance suite for any Docker volume plugin.

The suite itself is `cargohold.plugins.docker.plugin_checks`, imported when
the command runs: every ``cargohold`` command loads this module.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from cargohold.core import hookimpl
from cargohold.core.cli import key_values

if TYPE_CHECKING:
    from cargohold.plugins.docker.plugin_checks import Report


def print_report(report: Report) -> None:
    click.echo(f"plugin {report.plugin} at {report.address}")
    for check in report.checks:
        click.echo(f"{check.verdict}  {check.name:<22} {check.summary}")
        for exchange in check.evidence:
            click.echo(f"        > {exchange.method} {exchange.request or '(empty body)'}")
            status = exchange.status if exchange.status is not None else "-"
            click.echo(f"        < {status} {exchange.answer or '(empty body)'}")
        for note in check.notes:
            click.echo(f"        note: {note}")
    for problem in report.cleanup:
        click.echo(f"cleanup: {problem}")
    passed, warned, failed = report.counts()
    warnings = f"{warned} warning{'s' * (warned != 1)}, " if warned else ""
    click.echo(f"{passed} passed, {warnings}{failed} failed")


@click.command("check")
@click.argument("target", metavar="NAME|SOCKET")
@click.option(
    "-o", "--opt", "opts", multiple=True, help="option key=value for the test volume's Create"
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--timeout", type=float, default=None, help="seconds per call (default: the engine's, 60-120)"
)
def check_command(target: str, opts: tuple[str, ...], fmt: str, timeout: float | None) -> None:
    """Run the protocol conformance suite against a Docker volume plugin.

    NAME is found as the engine finds plugins; a path is a unix socket; a URL
    (unix://, tcp://, https://) is used as is. Exit 0 when no check fails
    (warnings name what only clients other than the Docker engine can cause).
    """
    from cargohold.plugins.docker.client import settings_from_env
    from cargohold.plugins.docker.discovery import address_for
    from cargohold.plugins.docker.plugin_checks import run_checks

    settings = settings_from_env()
    if timeout is not None:
        settings["timeout"] = timeout
    report = run_checks(address_for(target), key_values(opts, "option"), **settings)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report)
    sys.exit(0 if report.passed else 1)


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    plugin_group = group.commands.get("plugin")
    if isinstance(plugin_group, click.Group):
        plugin_group.add_command(check_command)
