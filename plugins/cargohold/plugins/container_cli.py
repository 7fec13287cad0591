"""``cargohold create|start|run|exec|ps|inspect|logs|wait|stop|kill|rm|commit``, as the docker CLI.

Exit codes follow ``docker run``: the container's own code; 125 when
cargohold itself failed (bad flags, unknown image, a mount that cannot be
made); 126 when the command cannot be executed; 127 when it is not found.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cargohold.core import CargoholdError, hookimpl
from cargohold.core.cli import act_on_each, emit_json, key_values, runtime, table, try_each

if TYPE_CHECKING:  # imported by the commands: loading the plugin must stay cheap
    from cargohold.core.containers.records import Container
    from cargohold.core.containers.service import ContainerService

F = TypeVar("F", bound=Callable[..., Any])

_COMMAND = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def _create_options(func: F) -> F:
    """The flags ``create`` and ``run`` share, as docker spells them."""
    options = [
        click.option("--name", help="container name (default: a random one)"),
        click.option("-v", "--volume", "volumes", multiple=True, help="[SOURCE:]TARGET[:ro|rw]"),
        click.option("--mount", "mounts", multiple=True, help="type=volume|bind|tmpfs,..."),
        click.option(
            "--volumes-from", "volumes_from", multiple=True, help="CONTAINER[:ro|:rw]: its mounts"
        ),
        click.option("--tmpfs", "tmpfs", multiple=True, help="TARGET[:size=64m,mode=1777]"),
        click.option("--read-only", "read_only", is_flag=True, help="read-only root filesystem"),
        click.option("-e", "--env", "env", multiple=True, help="NAME=value (NAME alone: ours)"),
        click.option("-w", "--workdir", help="working directory inside the container"),
        click.option("-u", "--user", help="user[:group], by name or id"),
        click.option("--entrypoint", help="replace the image's entrypoint"),
        # -h is docker's --hostname here; help stays --help (see _COMMAND)
        click.option("-h", "--hostname", help="host name inside the container (default: short id)"),
        click.option(
            "--network",
            "--net",
            "network",
            type=click.Choice(["none", "host"]),
            default="none",
            show_default=True,
            help="none: own network namespace with loopback only; host: the host's",
        ),
        click.option("-l", "--label", "labels", multiple=True, help="label key=value"),
        click.option("--rm", "autoremove", is_flag=True, help="remove the container when it exits"),
        click.option("-i", "--interactive", is_flag=True, help="keep stdin open (ours, with run)"),
        click.option("-t", "--tty", is_flag=True, help="give it a pseudo-terminal"),
        click.argument("image"),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _create(params: dict[str, Any]) -> Container:
    from cargohold.core.api.container_mounts import parse_all

    specs = parse_all(params["volumes"], params["mounts"], params["tmpfs"], params["volumes_from"])
    return runtime().containers.create(
        params["image"],
        params["command"],
        name=params["name"],
        mounts=specs,
        env=params["env"],
        workdir=params["workdir"],
        user=params["user"],
        entrypoint=params["entrypoint"],
        hostname=params["hostname"],
        network=params["network"],
        readonly=params["read_only"],
        autoremove=params["autoremove"],
        labels=key_values(params["labels"], "label"),
        stdin_open=params["interactive"],
        tty=params["tty"],
    )


def _fail(err: CargoholdError, code: int | None = None) -> None:
    if code is None:
        from cargohold.core.containers.runner import EXIT_RUNTIME

        code = EXIT_RUNTIME
    click.echo(f"cargohold: {err}", err=True)
    sys.exit(code)


@click.command("create", context_settings=_COMMAND)
@_create_options
def create_command(**params: Any) -> None:
    """Create a container from IMAGE without starting it; print its id."""
    try:
        container = _create(params)
    except CargoholdError as err:
        _fail(err)
    click.echo(container.id)


@click.command("run", context_settings=_COMMAND)
@_create_options
@click.option("-d", "--detach", is_flag=True, help="run in the background; print the id")
def run_command(detach: bool, **params: Any) -> None:
    """Create and start a container; wait for it and exit with its code."""
    from cargohold.core.containers.records import StartFailed

    service = runtime().containers
    try:
        container = _create(params)
        if detach:
            service.start(container.id)
            click.echo(container.id)
            return
        code = service.supervise(container.id, attach=True)
    except StartFailed as err:
        _fail(err, err.exit_code)
    except CargoholdError as err:
        _fail(err)
    sys.exit(code)


@click.command("start")
@click.argument("containers", nargs=-1, required=True)
def start_command(containers: tuple[str, ...]) -> None:
    """Start stopped containers in the background."""
    service = runtime().containers
    act_on_each(containers, service.start)


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="also stopped containers")
@click.option("-q", "--quiet", is_flag=True, help="only ids")
@click.option("--no-trunc", is_flag=True, help="full ids and commands")
def ps_command(show_all: bool, quiet: bool, no_trunc: bool) -> None:
    """List containers (running ones, or all with -a)."""
    from cargohold.core.containers.records import describe_status

    containers = runtime().containers.list(all=show_all)
    if quiet:
        for c in containers:
            click.echo(c.id if no_trunc else c.short_id)
        return
    rows = []
    for c in containers:
        command = " ".join(c.args)
        if not no_trunc and len(command) > 20:
            command = command[:19] + "…"
        rows.append(
            [
                c.id if no_trunc else c.short_id,
                c.image,
                f'"{command}"',
                c.created[:19].replace("T", " "),
                describe_status(c.state),
                c.name,
            ]
        )
    table(rows, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"])


@click.command("inspect")
@click.argument("containers", nargs=-1, required=True)
def inspect_command(containers: tuple[str, ...]) -> None:
    """Show containers in detail (JSON, as docker inspect)."""
    service = runtime().containers
    found, failed = try_each(containers, lambda ref: _inspect(service, service.get(ref)))
    emit_json(found)
    if failed:
        sys.exit(1)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="keep printing until the container stops")
@click.argument("container")
def logs_command(follow: bool, container: str) -> None:
    """Print a container's output.

    Its stdout goes to stdout here, its stderr to stderr.
    """
    for stream, data in runtime().containers.logs(container, follow=follow):
        os.write(1 if stream == "stdout" else 2, data)


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
def wait_command(containers: tuple[str, ...]) -> None:
    """Wait for containers to stop; print their exit codes."""
    service = runtime().containers
    for ref in containers:
        click.echo(service.wait(ref))


@click.command("stop")
@click.option(
    "-t", "--time", "--timeout", "timeout", type=int, default=10, show_default=True,
    help="seconds to wait after SIGTERM before SIGKILL",
)  # fmt: skip
@click.argument("containers", nargs=-1, required=True)
def stop_command(timeout: int, containers: tuple[str, ...]) -> None:
    """Stop containers: SIGTERM, then SIGKILL after the timeout."""
    service = runtime().containers
    act_on_each(containers, lambda ref: service.stop(ref, timeout))


@click.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="name or number")
@click.argument("containers", nargs=-1, required=True)
def kill_command(sig: str, containers: tuple[str, ...]) -> None:
    """Send a signal to running containers.

    PID 1 of a container ignores those it has no handler for.
    """
    number = _signal_number(sig)
    service = runtime().containers
    act_on_each(containers, lambda ref: service.kill(ref, number))


def _signal_number(text: str) -> int:
    from cargohold.core.containers.signals import number

    try:
        return number(text)
    except ValueError:
        raise click.BadParameter(f"unknown signal {text!r}", param_hint="--signal") from None


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="kill a running container first")
@click.option("-v", "--volumes", is_flag=True, help="also remove its anonymous volumes")
@click.argument("containers", nargs=-1, required=True)
def rm_command(force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove containers."""
    service = runtime().containers
    act_on_each(containers, lambda ref: service.remove(ref, force=force, volumes=volumes))


class _CommitCommand(click.Command):
    """Takes docker's ``--pause=false``: pflag's bool flags accept a value, click's not."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [_bool_flag(a, ("-p", "--pause")) for a in args])


def _bool_flag(arg: str, names: tuple[str, ...]) -> str:
    """``--pause=false`` -> ``--no-pause``, ``--pause=true`` -> ``--pause``."""
    name, sep, value = arg.partition("=")
    if not sep or name not in names:
        return arg
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return names[-1]
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return "--no-" + names[-1].removeprefix("--")
    raise click.BadParameter(f'invalid argument "{value}" for "{arg}": give true or false')


@click.command("commit", cls=_CommitCommand)
@click.option(
    "-p",
    "--pause",
    "pause",
    flag_value=True,
    default=True,
    help="pause a running container while committing (default true; --pause=false)",
)
@click.option("--no-pause", "pause", flag_value=False, hidden=True)
@click.option("-m", "--message", default="", help="commit message")
@click.option("-a", "--author", default="", help='author, e.g. "Ann <ann@example.com>"')
@click.option("-c", "--change", "changes", multiple=True, help="Dockerfile instruction, e.g. CMD")
@click.argument("container")
@click.argument("repository", required=False)
def commit_command(
    pause: bool,
    message: str,
    author: str,
    changes: tuple[str, ...],
    container: str,
    repository: str | None,
) -> None:
    """Make an image from a container's changes; print its id.

    A running container is paused while its files are read, as docker does
    (--pause=false reads them as they run).
    """
    image = runtime().containers.commit(
        container, repository, message=message, author=author, changes=changes, pause=pause
    )
    click.echo(image.id)


@click.command("exec", context_settings=_COMMAND)
@click.option("-i", "--interactive", is_flag=True, help="keep stdin open")
@click.option("-t", "--tty", is_flag=True, help="give it a pseudo-terminal")
@click.option("-e", "--env", "env", multiple=True, help="NAME=value (NAME alone: ours)")
@click.option("-u", "--user", help="user[:group] (default: the container's)")
@click.option("-w", "--workdir", help="working directory (default: the container's)")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    user: str | None,
    workdir: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in a running container; exit with its code.

    It runs in the container's namespaces and root.
    """
    from cargohold.core.containers.attached import run_exec
    from cargohold.core.containers.execute import ExecSpec
    from cargohold.core.containers.runner import StartError

    try:
        found = runtime().containers.get(container)
        code = run_exec(found, ExecSpec(command, env, user, workdir, tty), stdin=interactive)
    except StartError as err:
        click.echo(f"cargohold: {err}", err=True)
        sys.exit(err.exit_code)
    except CargoholdError as err:
        _fail(err)
    sys.exit(code)


def _inspect(service: ContainerService, c: Container) -> dict[str, Any]:
    """``cargohold inspect``: what ``docker inspect`` shows (the frontends' shared shape)."""
    from cargohold.plugins import shapes

    lookup = shapes.volume_lookup(runtime().volumes)
    return shapes.container_inspect(c, lookup, str(service.log_path(c)))


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    for command in (
        create_command,
        run_command,
        exec_command,
        start_command,
        ps_command,
        inspect_command,
        logs_command,
        wait_command,
        stop_command,
        kill_command,
        rm_command,
        commit_command,
    ):
        group.add_command(command)
