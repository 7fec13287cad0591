"""``cargohold pull | push | login | logout | build``: images to and from registries, and
images built from a Dockerfile. Output and exit codes follow docker's."""

from __future__ import annotations

import sys

import click

from cargohold.core import hookimpl
from cargohold.core.cli import runtime

_INSECURE_HELP = "allow plain HTTP to this registry host (repeatable; loopback always is)"


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    for command in (pull_command, push_command, login_command, logout_command, build_command):
        if command.name not in group.commands:
            group.add_command(command)


@click.command("pull")
@click.argument("reference")
@click.option("--platform", default=None, help="os/arch[/variant] (default: this host's)")
@click.option("-q", "--quiet", is_flag=True, help="print only the image's name")
@click.option("--insecure-registry", "insecure", multiple=True, help=_INSECURE_HELP)
def pull_command(
    reference: str, platform: str | None, quiet: bool, insecure: tuple[str, ...]
) -> None:
    """Pull an image (NAME[:TAG|@DIGEST]) from a registry."""
    from cargohold.core.images.layer_progress import LayerProgress
    from cargohold.core.images.pull import pull

    rt = runtime()
    result = pull(
        rt.state_dir,
        rt.images,
        reference,
        platform=platform,
        insecure=insecure,
        progress=LayerProgress(quiet=quiet),
    )
    click.echo(result.reference.canonical)


@click.command("push")
@click.argument("reference")
@click.option("-q", "--quiet", is_flag=True, help="print no progress")
@click.option("--insecure-registry", "insecure", multiple=True, help=_INSECURE_HELP)
def push_command(reference: str, quiet: bool, insecure: tuple[str, ...]) -> None:
    """Push an image (NAME[:TAG]) to its registry."""
    from cargohold.core.images.layer_progress import LayerProgress
    from cargohold.core.images.push import push

    rt = runtime()
    push(rt.state_dir, rt.images, reference, insecure=insecure, progress=LayerProgress(quiet=quiet))


@click.command("login")
@click.argument("registry", required=False, default="docker.io")
@click.option("-u", "--username", default=None, help="user name")
@click.option(
    "-p",
    "--password",
    "password_ref",
    default=None,
    help="a secret reference to the password: env:NAME or file:/path (never the password)",
)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--insecure-registry", "insecure", multiple=True, help=_INSECURE_HELP)
def login_command(
    registry: str,
    username: str | None,
    password_ref: str | None,
    password_stdin: bool,
    insecure: tuple[str, ...],
) -> None:
    """Log in to a registry.

    The login is kept in a 0600 file under the state directory.
    """
    from cargohold.core.images.credentials import (
        CredentialStore,
        normalize_host,
        open_registry,
        resolve_password,
    )
    from cargohold.core.images.distribution import Credentials

    rt = runtime()
    host = normalize_host(registry)
    if password_ref and password_stdin:
        raise click.UsageError("--password and --password-stdin cannot be given together")
    if username is None:
        if password_stdin or not sys.stdin.isatty():
            raise click.UsageError("give --username with --password-stdin or without a terminal")
        username = click.prompt("Username", err=True)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password_ref:
        password = resolve_password(rt.hook, password_ref)
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, err=True)
    else:
        raise click.UsageError("give --password env:NAME|file:/path, or --password-stdin")
    if not username or not password:
        raise click.UsageError("the user name and the password must not be empty")
    credentials = Credentials(username, password)
    client = open_registry(rt.state_dir, host, insecure=insecure, credentials=credentials)
    try:
        client.check()
    finally:
        client.close()
    CredentialStore(rt.state_dir).set(host, credentials)
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("registry", required=False, default="docker.io")
def logout_command(registry: str) -> None:
    """Forget the login to a registry (Docker Hub if none is named)."""
    from cargohold.core.images.credentials import CredentialStore, normalize_host

    host = normalize_host(registry)
    if CredentialStore(runtime().state_dir).remove(host):
        click.echo(f"Removing login credentials for {host}")
    else:
        click.echo(f"Not logged in to {host}")


@click.command("build")
@click.argument("context", type=click.Path(file_okay=False))
@click.option("-t", "--tag", "tags", multiple=True, help="name[:tag] for the image (repeatable)")
@click.option(
    "-f", "--file", "dockerfile", default=None, help="the Dockerfile (default: CONTEXT/Dockerfile)"
)
@click.option("--build-arg", "build_args", multiple=True, help="KEY=VALUE for an ARG")
@click.option("--no-cache", is_flag=True, help="build every step again")
@click.option("-q", "--quiet", is_flag=True, help="print only the image id")
@click.option("--platform", default=None, help="platform of images FROM pulls")
@click.option("--insecure-registry", "insecure", multiple=True, help=_INSECURE_HELP)
def build_command(
    context: str,
    tags: tuple[str, ...],
    dockerfile: str | None,
    build_args: tuple[str, ...],
    no_cache: bool,
    quiet: bool,
    platform: str | None,
    insecure: tuple[str, ...],
) -> None:
    """Build an image from a Dockerfile.

    As docker's classic builder does.
    """
    from cargohold.core.images.build.builder import BuildOptions, build, build_arg_values

    args = build_arg_values(build_args)
    options = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        tags=tags,
        build_args=args,
        no_cache=no_cache,
        quiet=quiet,
        platform=platform,
        insecure=insecure,
    )
    image = build(runtime(), options)
    if quiet:
        click.echo(image.id)
