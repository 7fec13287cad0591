"""``cargohold bench``: any driver or Docker volume plugin, side by side, against floors.

This module is imported by every ``cargohold`` command (it is the plugin's entry
point): rich, matplotlib, fio and the workloads are imported inside the command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cargohold.core import InvalidArgument, hookimpl

WORKLOAD_NAMES = ("lifecycle", "protocol", "data", "arrays", "cloud", "concurrent", "layers")


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    group.add_command(bench_command)


def parse_opts(pairs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``[TARGET:]KEY=VALUE`` -> {target or "*": {key: value}}."""
    parsed: dict[str, dict[str, str]] = {}
    for pair in pairs:
        left, eq, value = pair.partition("=")
        target, colon, key = left.rpartition(":")
        if not eq or not key:
            raise InvalidArgument(f"-o {pair!r}: write [TARGET:]KEY=VALUE")
        parsed.setdefault(target if colon else "*", {})[key] = value
    return parsed


@click.command("bench")
@click.option(
    "--driver",
    "-d",
    "drivers",
    multiple=True,
    required=True,
    metavar="NAME",
    help="a target: a cargohold driver, served:DRIVER (served over the Docker protocol), "
    "snapshotter:NAME, or a Docker volume plugin by name, socket path or URL; repeat it",
)
@click.option(
    "--workload",
    "-w",
    "workloads",
    multiple=True,
    type=click.Choice(WORKLOAD_NAMES),
    help="what to run (repeat it; default: every workload that applies to the targets)",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write results in pytest-benchmark's JSON layout",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="write an HTML page with plots into this directory",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write the table as markdown (for docs)",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="bound the whole run; each case gets a fair share of the time left",
)
@click.option(
    "--compare",
    "compare_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="OLD.json",
    help="show each case's change against an earlier --json",
)
@click.option(
    "--fail-over",
    type=click.FloatRange(min=0),
    metavar="PERCENT",
    help="with --compare: exit 1 if any ratio got worse by more than this",
)
@click.option(
    "-o",
    "--opt",
    "opts",
    multiple=True,
    metavar="[TARGET:]KEY=VALUE",
    help="a volume option for TARGET's volumes (for every target without TARGET:)",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=3),
    default=30,
    show_default=True,
    help="rounds per latency figure (fewer when time runs short)",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="concurrent clients in the lifecycle workload",
)
@click.option(
    "--size",
    "size_mb",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    metavar="MB",
    help="file size of the sequential data-path jobs",
)
@click.option(
    "--runner",
    type=click.Choice(["auto", "fio", "python"]),
    default="auto",
    show_default=True,
    help="data-path jobs with fio or the built-in Python runner",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="scratch space (default a fresh directory in /var/tmp); the disk floors "
    "run on its filesystem",
)
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
def bench_command(
    drivers: tuple[str, ...],
    workloads: tuple[str, ...],
    json_path: Path | None,
    report_dir: Path | None,
    markdown_path: Path | None,
    time_limit: float | None,
    compare_path: Path | None,
    fail_over: float | None,
    opts: tuple[str, ...],
    rounds: int,
    clients: int,
    size_mb: int,
    runner: str,
    work_dir: Path | None,
    no_progress: bool,
) -> None:
    """Benchmark volume drivers, Docker plugins and snapshotters.

    Drivers in process or served, Docker volume plugins, snapshotters.

    Every figure is measured with its floor in the same run (mkdir and a bind
    mount for the lifecycle, the same job on a plain directory and on tmpfs for
    the data path, a bare overlay mount for layers, a no-op handler for the
    protocol) and reported as a ratio: 1.0 is the floor, higher is worse.

    Example: cargohold bench -d local -d served:local -d rclone --json out.json --report out
    """
    import shutil
    import tempfile

    from rich.console import Console

    from cargohold.core.testing.bench import Budget
    from cargohold.core.testing.bench.floors import filesystem_of, unmount_everything_under
    from cargohold.plugins.bench import report, results, run, targets

    if fail_over is not None and compare_path is None:
        raise click.UsageError("--fail-over needs --compare OLD.json")
    if len(set(drivers)) != len(drivers):
        raise click.UsageError("a target is named twice")
    for spec in drivers:
        targets.check_spelling(spec)
    if runner == "fio" and shutil.which("fio") is None:
        raise InvalidArgument("--runner fio: fio is not installed (apt-get install fio)")
    old = results.load(compare_path) if compare_path is not None else None
    budget = Budget(time_limit)
    chosen = list(workloads) or [w for w in run.ALL_WORKLOADS if w != "layers"]
    settings = run.Settings(rounds, clients, size_mb, None if runner == "auto" else runner)
    # a pipe or a file gets the whole table, not 80 columns of wrapped cells
    console = Console() if sys.stdout.isatty() else Console(width=160)
    made_workdir = work_dir is None
    workdir = work_dir or Path(tempfile.mkdtemp(prefix="cargohold-bench-", dir="/var/tmp"))
    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    try:
        need_noop = "protocol" in chosen
        # no plugin call may outlast the run (the engine's own timeouts are 1-2 minutes)
        call_timeout = 60.0 if time_limit is None else max(5.0, min(60.0, time_limit / 4))
        resolving = targets.resolve(
            list(drivers),
            scratch,
            parse_opts(opts),
            need_noop=need_noop,
            timeout=call_timeout,
            data_mb=size_mb,
        )
        with resolving as (rt, found):
            if "layers" in workloads:
                run.add_default_snapshotter(rt, found)
            elif found.layers and not workloads:
                chosen.insert(chosen.index("concurrent"), "layers")
            try:
                got = run.run(
                    chosen, found, scratch, budget, settings,
                    show_progress=not no_progress and sys.stderr.isatty(),
                )  # fmt: skip
            finally:
                run.clean_volumes(rt, found)
    finally:
        unmount_everything_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        if made_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    doc = results.document(
        got,
        filesystem_of(workdir.parent if made_workdir else workdir),
        run.settings_dict(settings, chosen, list(drivers), time_limit),
    )
    report.print_table(console, got, "cargohold bench: ratio = cost / floor (1 = floor)")
    if json_path is not None:
        results.write_json(json_path, doc)
        console.print(f"JSON: {json_path}")
    if markdown_path is not None:
        markdown_path.write_text(report.markdown(got))
        console.print(f"markdown: {markdown_path}")
    if report_dir is not None:
        index = report.write_report(report_dir, got, doc)
        console.print(f"report: {index}")
    if old is not None:
        changes, fresh = results.compare(old, doc)
        report.print_changes(console, changes, fail_over)
        if fresh:
            console.print(f"new cases (not in {compare_path}): {', '.join(fresh)}")
        worse = results.over(changes, fail_over) if fail_over is not None else []
        if worse:
            names = ", ".join(f"{c.name} ({c.percent:+.1f}%)" for c in worse)
            click.echo(f"Error: ratio worse by more than {fail_over:g}%: {names}", err=True)
            sys.exit(1)
