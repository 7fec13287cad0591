"""The ``cargohold`` command line.

Commands reach the runtime through `runtime()`; plugins add their own
commands through the `cargohold_cli` hook. Every `CargoholdError` becomes a
one-line message on stderr and exit code 1; usage errors exit 2.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from cargohold.core.api.errors import CargoholdError, InvalidArgument
from cargohold.core.api.volume_driver import VolumeDriver
from cargohold.core.plugin.manager import PluginManager, build_plugin_manager
from cargohold.core.runtime import Runtime
from cargohold.core.state.paths import STATE_DIR_ENV, default_state_dir
from cargohold.core.volumes.filters import LIST_FILTERS, PRUNE_FILTERS, parse_filters
from cargohold.core.volumes.service import Volume

T = TypeVar("T")


def runtime() -> Runtime:
    """The runtime of the running command, built on first use; its drivers close at exit."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    rt = root.meta.get("cargohold.runtime")
    if rt is None:
        state_dir = root.params.get("state_dir")
        # the manager `main` built for this command line (building one is slow)
        pm = root.obj if isinstance(root.obj, PluginManager) else None
        try:
            rt = Runtime(Path(state_dir) if state_dir else None, plugin_manager=pm)
        except (OSError, sqlite3.Error, RuntimeError) as err:
            where = state_dir or default_state_dir()
            raise CargoholdError(
                f"cannot open the state directory {where}: {err}. "
                f"Point {STATE_DIR_ENV} or --state-dir at a writable directory"
            ) from None
        root.meta["cargohold.runtime"] = rt
        # the command's process ends next: its drivers close, its databases need not
        root.call_on_close(rt.close_drivers)
    assert isinstance(rt, Runtime)
    return rt


def key_values(pairs: Sequence[str], what: str) -> dict[str, str]:
    """``("a=b", "c")`` -> ``{"a": "b", "c": ""}``, as docker parses -o and --label."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise InvalidArgument(f"bad {what} {pair!r}: write key=value")
        result[key] = value
    return result


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=4))


def try_each(names: Iterable[str], action: Callable[[str], T]) -> tuple[list[T], bool]:
    """``action`` on every name, as docker treats several: a failure prints
    ``Error: ...`` and the rest still run. Returns what the calls that worked
    returned, and whether any failed (the command then exits 1)."""
    results: list[T] = []
    failed = False
    for name in names:
        try:
            results.append(action(name))
        except CargoholdError as err:
            click.echo(f"Error: {err}", err=True)
            failed = True
    return results, failed


def act_on_each(names: Iterable[str], action: Callable[[str], object]) -> None:
    """`try_each`, printing each name that worked; exit 1 at the end if any failed."""

    def act(name: str) -> None:
        action(name)
        click.echo(name)

    if try_each(names, act)[1]:
        sys.exit(1)


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--state-dir",
    envvar=STATE_DIR_ENV,
    type=click.Path(file_okay=False),
    help=f"state directory (default: /var/lib/cargohold as root, else the XDG state dir; "
    f"env {STATE_DIR_ENV})",
)
@click.version_option(package_name="cargohold")
def cli(state_dir: str | None) -> None:
    """cargohold: pluggable storage and volume drivers for containers."""


# -- volume ------------------------------------------------------------------


@cli.group()
def volume() -> None:
    """Manage volumes."""


@volume.command("create")
@click.argument("name", required=False)
@click.option("-d", "--driver", default="local", show_default=True, help="volume driver")
@click.option(
    "-o", "--opt", "opts", multiple=True, help="driver option key=value ('-o help' lists them)"
)
@click.option("--label", "labels", multiple=True, help="label key=value")
def volume_create(
    name: str | None, driver: str, opts: tuple[str, ...], labels: tuple[str, ...]
) -> None:
    """Create a volume.

    Without NAME, an anonymous one with a 64-hex name, as docker makes.
    """
    rt = runtime()
    if "help" in opts:
        describe_options(rt.drivers.get(driver))
        return
    created = rt.volumes.create(
        name,
        driver,
        key_values(opts, "option"),
        key_values(labels, "label"),
        anonymous=name is None,
    )
    click.echo(created.name)


def describe_options(driver: VolumeDriver) -> None:
    if driver.accepts_any_option and not driver.options:
        # a remote Docker plugin: the protocol has no way to declare options
        click.echo(
            f"driver {driver.name} (scope {driver.scope}) declares no options: every "
            "-o key=value passes through to it unchanged, and it checks them itself "
            "(see the plugin's own documentation)"
        )
        return
    click.echo(f"driver {driver.name} (scope {driver.scope}) takes these options:")
    if not driver.options:
        click.echo("  (none)")
    rows = []
    for option in driver.options:
        flags: list[str] = [option.type]
        if option.required:
            flags.append("required")
        if option.secret:
            flags.append("secret: give env:NAME or file:/path")
        if option.default is not None:
            flags.append(f"default {option.default}")
        if option.choices:
            flags.append("one of " + "|".join(option.choices))
        rows.append([f"  {option.name}", ", ".join(flags), option.help])
    if rows:
        table(rows, ["  OPTION", "KIND", "MEANING"])
    if driver.example_options:
        example = " ".join(
            f"-o {k}={v.replace('{tmp}', '/srv/data')}" for k, v in driver.example_options.items()
        )
        click.echo(f"example: cargohold volume create -d {driver.name} {example} NAME")


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only names")
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=, driver=, label=, name=")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def volume_ls(quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List volumes.

    --format json prints one JSON object a line, as docker volume ls.
    """
    volumes = runtime().volumes.list(parse_filters(filters, LIST_FILTERS))
    if fmt == "json":  # as docker: one object per line, and --format wins over -q
        for v in volumes:
            click.echo(json.dumps(_listed_view(v), sort_keys=True, separators=(",", ":")))
    elif quiet:
        for v in volumes:
            click.echo(v.name)
    else:
        table([[v.driver, v.name] for v in volumes], ["DRIVER", "VOLUME NAME"])


def _listed_view(v: Volume) -> dict[str, str]:
    """A row of ``docker volume ls --format json``: the CLI's fields, all strings."""
    return {
        "Availability": "N/A",
        "Driver": v.driver,
        "Group": "N/A",
        "Labels": ",".join(f"{k}={value}" for k, value in sorted(v.labels.items())),
        "Links": "N/A",
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Scope": v.scope,
        "Size": "N/A",
        "Status": "N/A",
    }


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["json"]), default="json")
def volume_inspect(names: tuple[str, ...], fmt: str) -> None:
    """Show volumes in detail (JSON, as docker volume inspect)."""
    found, failed = try_each(names, runtime().volumes.get)
    emit_json([_inspect_view(v) for v in found])
    if failed:
        sys.exit(1)


def _inspect_view(v: Volume) -> dict[str, Any]:
    """``docker volume inspect``'s object, key for key: empty labels and options are
    null, as the engine shows them; what docker has no field for (the reference
    count) goes under ``Status``, beside the driver's own facts, and an empty
    ``Status`` is left out."""
    status: dict[str, Any] = dict(v.status)
    if v.ref_count:
        status["RefCount"] = v.ref_count
    view: dict[str, Any] = {
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        # sorted, as Go writes a map
        "Labels": dict(sorted(v.labels.items())) or None,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": dict(sorted(v.options.items())) or None,
        "Scope": v.scope,
    }
    if status:
        view["Status"] = dict(sorted(status.items()))
    return view


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-f", "--force", is_flag=True, help="no error for missing volumes (never removes one in use)"
)
def volume_rm(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes. A volume in use is never removed."""
    service = runtime().volumes
    act_on_each(names, lambda name: service.remove(name, force=force))


@volume.command("prune")
@click.option(
    "-a", "--all", "prune_all", is_flag=True, help="also named volumes, not only anonymous"
)
@click.option("--filter", "filters", multiple=True, help="label=, label!=, all=, dangling=")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
def volume_prune(prune_all: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove unused volumes (anonymous ones, or all with -a)."""
    parsed = parse_filters(filters, PRUNE_FILTERS)
    if prune_all:
        parsed["all"] = {"true"}
    what = (
        "all local volumes not used by at least one container"
        if prune_all
        else ("all anonymous local volumes not used by at least one container")
    )
    if not force and not click.confirm(f"WARNING! This will remove {what}.\nAre you sure?"):
        return
    report = runtime().volumes.prune(parsed)
    if report.removed:
        click.echo("Deleted Volumes:")
        for name in report.removed:
            click.echo(name)
        click.echo()
    click.echo(f"Total reclaimed space: {report.space_reclaimed} B")


# -- plugin ------------------------------------------------------------------


@cli.group()
def plugin() -> None:
    """Inspect plugins."""


@plugin.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def plugin_ls(fmt: str) -> None:
    """List loaded plugins and the volume drivers each provides."""
    rt = runtime()
    rows: list[dict[str, Any]] = []
    for name, module in rt.plugin_manager.list_name_plugin():
        drivers: list[str] = []
        impl = getattr(module, "cargohold_volume_drivers", None)
        if impl is not None:
            drivers = [cls.name for cls in impl()]
        dist = rt.plugin_manager.origins.get(name, "-")
        rows.append({"name": name, "distribution": dist, "drivers": drivers})
    if fmt == "json":
        emit_json(rows)
        return
    table(
        [[r["name"], r["distribution"], ", ".join(r["drivers"]) or "-"] for r in rows],
        ["PLUGIN", "FROM", "DRIVERS"],
    )


# -- entry point -------------------------------------------------------------


def build_cli(pm: PluginManager) -> click.Group:
    """The command line, with the commands of ``pm``'s plugins added."""
    pm.hook.cargohold_cli(group=cli)
    return cli


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run one command line in this process and return its exit code (for embedders and tests)."""
    try:
        pm = build_plugin_manager()
        # the manager travels in the click context, for `runtime`: no module-global one
        build_cli(pm).main(args=argv, prog_name="cargohold", standalone_mode=False, obj=pm)
    except SystemExit as done:
        return _exit_code(done.code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except CargoholdError as err:
        click.echo(f"Error: {err}", err=True)
        return 1
    except OSError as err:  # permission denied, disk full: the user's to fix, not a bug
        click.echo(f"Error: {err}", err=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``cargohold`` command: run it, then exit without tearing the interpreter down."""
    exit_now(run_cli(argv))


def exit_now(code: int) -> NoReturn:
    """End the process with ``code``, as `sys.exit` would but without Python's teardown.

    Freeing every module and object at exit costs each command 30-50 ms here
    (a sixth of a ``cargohold run``), and nothing is left to free once the
    process ends. What an exit must still do is done first: the atexit
    handlers (logging's flush, temporary directories' cleanup) and flushing
    stdout and stderr. While a non-daemon thread still runs, or a profiler or
    debugger watches (they report at the normal exit), the normal exit is taken.
    """
    current = threading.current_thread()
    others = any(t is not current and not t.daemon for t in threading.enumerate())
    if others or sys.gettrace() is not None or sys.getprofile() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone, a stream closed
            stream.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return 1
