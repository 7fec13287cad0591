"""Registers the cloud-share drivers (s3, azurefile, gcs) and ``cargohold volume sync``.

A driver is offered only when its SDK is installed (``pip install
'cargohold[s3]'``, ``[azure]``, ``[gcs]`` or ``[cloud]``); otherwise asking for
it gives that install line. Nothing heavy is imported at start-up: the SDKs are
looked up without importing them, and the drivers are imported only when
drivers are collected.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from cargohold.core import CargoholdError, InvalidArgument, KnownImplementation, hookimpl

if TYPE_CHECKING:
    from cargohold.drivers.cloud.base import CloudDriver

#: driver name -> (class, the module its SDK must provide, the extra that installs it)
_DRIVERS = {
    "s3": ("S3Driver", "boto3", "s3"),
    "azurefile": ("AzureFileDriver", "azure.storage.fileshare", "azure"),
    "gcs": ("GCSDriver", "google.cloud.storage", "gcs"),
}


@hookimpl
def cargohold_volume_drivers() -> Sequence[KnownImplementation]:
    return [
        KnownImplementation(
            name,
            f"cargohold.drivers.cloud.drivers:{cls}",
            install=f"pip install 'cargohold[{extra}]'",
            requires=(sdk,),
        )
        for name, (cls, sdk, extra) in _DRIVERS.items()
    ]


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    volume = group.commands.get("volume")
    if isinstance(volume, click.Group):
        volume.add_command(volume_sync)


@click.command("sync")
@click.argument("name")
@click.option(
    "--wait",
    is_flag=True,
    help="wait for a write-back another process is running, then flush the rest",
)
def volume_sync(name: str, wait: bool) -> None:
    """Write a cloud volume's pending changes back now.

    A progress bar shows how far it got.
    Exits 1 if conflicts were found since the last sync (each is listed; both
    versions are kept), and 3 without --wait when another process is already
    writing the volume back.
    """
    from cargohold.core.cli import runtime

    rt = runtime()
    volume = rt.volumes.get(name)
    drv = rt.drivers.get(volume.driver)
    from cargohold.drivers.cloud.base import CloudDriver
    from cargohold.drivers.cloud.workers import resolve_options

    if not isinstance(drv, CloudDriver):
        raise InvalidArgument(
            f"volume {name} uses driver {volume.driver}, which keeps no write-back to sync"
        )
    opts = resolve_options(drv, volume.options, rt.hook)
    if opts is None:
        raise InvalidArgument(f"volume {name}: a secret option's reference resolves to nothing")
    secrets = [str(opts[o.name]) for o in drv.options if o.secret and opts.get(o.name)]
    try:
        report = _run_with_progress(drv, name, opts, wait)
    except CargoholdError as err:
        raise type(err)(_redact(str(err), secrets)) from None
    if report is None:
        click.echo(
            f"volume {name} is being written back by another process; use --wait to wait for it",
            err=True,
        )
        sys.exit(3)
    click.echo(f"{name}: {report.ops} changes written back ({report.bytes} bytes)")
    if report.conflicts:
        for conflict in report.conflicts:
            where = f" (local version kept as {conflict.copy})" if conflict.copy else ""
            click.echo(f"conflict: {conflict.path}: {conflict.reason}{where}", err=True)
        click.echo(
            f"Error: volume {name}: {len(report.conflicts)} conflicts; both versions are kept, "
            "resolve them and delete the copy you do not want",
            err=True,
        )
        sys.exit(1)


def _run_with_progress(drv: CloudDriver, name: str, opts: dict[str, Any], wait: bool) -> Any:
    try:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    except ImportError:  # no rich: plain lines on stderr
        return drv.sync(name, opts, wait=wait, progress=_plain_progress(name))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[files]}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"sync {name}", total=None, files="")

        def update(ops: int, ops_total: int, done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1), files=f"{ops}/{ops_total}")

        return drv.sync(name, opts, wait=wait, progress=update)


def _plain_progress(name: str) -> Callable[[int, int, int, int], None]:
    last = [-1]

    def update(ops: int, ops_total: int, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if percent // 10 != last[0]:
            last[0] = percent // 10
            click.echo(f"sync {name}: {ops}/{ops_total} changes, {percent}%", err=True)

    return update


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "********")
    return text
