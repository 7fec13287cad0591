"""``cargohold image ...``: load, import, list, inspect, remove, save and tag images."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from cargohold.core import hookimpl
from cargohold.core.cli import emit_json, runtime, table, try_each
from cargohold.core.progress import ProgressLine, human_size
from cargohold.plugins import shapes


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    group.add_command(image)
    # docker's top-level spellings, where no other plugin took the name
    aliases = {
        "images": image_ls,
        "load": image_load,
        "import": image_import,
        "rmi": image_rm,
        "save": image_save,
        "tag": image_tag,
    }
    for name, command in aliases.items():
        if name not in group.commands:
            group.add_command(command, name)


@click.group()
def image() -> None:
    """Manage images (docker-archive and OCI archives, rootfs tarballs)."""


@image.command("load")
@click.option(
    "-i", "--input", "source", required=True, type=click.Path(), help="archive or OCI layout"
)
@click.option("-q", "--quiet", is_flag=True, help="print nothing (no progress either)")
def image_load(source: str, quiet: bool) -> None:
    """Load images from docker save or OCI archives.

    An OCI layout directory works too.
    On a terminal, progress goes to standard error.
    """
    store = runtime().images
    with ProgressLine(f"Loading {source}", _bytes_under(source), quiet=quiet) as progress:
        loaded_images = store.load(source, progress)
    for loaded in loaded_images:
        if quiet:
            continue
        if loaded.repo_tags:
            for tag in loaded.repo_tags:
                click.echo(f"Loaded image: {tag}")
        else:
            click.echo(f"Loaded image ID: {loaded.id}")


@image.command("import")
@click.argument("file")
@click.argument("reference", required=False)
@click.option("-c", "--change", "changes", multiple=True, help="e.g. 'CMD [\"/bin/sh\"]'")
@click.option("-m", "--message", default="", help="commit message for the image")
@click.option("-q", "--quiet", is_flag=True, help="show no progress")
def image_import(
    file: str, reference: str | None, changes: tuple[str, ...], message: str, quiet: bool
) -> None:
    """Make an image from a root filesystem tarball.

    FILE is the tarball, or - for stdin.
    On a terminal, progress goes to standard error.
    """
    store = runtime().images
    total = None if file == "-" else _bytes_under(file)
    with ProgressLine(f"Importing {file}", total, quiet=quiet) as progress:
        made = store.import_rootfs(
            file, reference, changes=changes, message=message, progress=progress
        )
    click.echo(made.id)


@image.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only image ids")
@click.option("--no-trunc", is_flag=True, help="full image ids")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def image_ls(quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List images."""
    images = runtime().images.list()
    if fmt == "json":
        emit_json([shapes.image_summary(i) for i in images])
        return
    if quiet:
        for i in images:
            click.echo(i.id if no_trunc else i.short_id)
        return
    rows: list[list[str]] = []
    for i in images:
        shown = i.id if no_trunc else i.short_id
        created, size = _ago(str(i.config.get("created", i.created))), human_size(i.size)
        for tag in i.repo_tags or ("<none>:<none>",):
            repo, _, version = tag.rpartition(":")
            rows.append([repo, version, shown, created, size])
    table(rows, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"])


@image.command("inspect")
@click.argument("refs", nargs=-1, required=True)
def image_inspect(refs: tuple[str, ...]) -> None:
    """Show images in detail (JSON, as docker image inspect)."""
    found, failed = try_each(refs, runtime().images.get)
    emit_json([shapes.image_inspect(i) for i in found])
    if failed:
        sys.exit(1)


@image.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="remove an image by id even if it has tags")
def image_rm(refs: tuple[str, ...], force: bool) -> None:
    """Remove images (untag; delete when no tag is left), as docker rmi."""
    store = runtime().images

    def remove(ref: str) -> None:
        for action, what in store.remove(ref, force=force):
            click.echo(f"{action}: {what}")

    if try_each(refs, remove)[1]:
        sys.exit(1)


@image.command("save")
@click.argument("refs", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="file (default: stdout)")
@click.option("-q", "--quiet", is_flag=True, help="show no progress")
def image_save(refs: tuple[str, ...], output: str | None, quiet: bool) -> None:
    """Write images as a docker-archive (what docker load reads).

    On a terminal, progress goes to standard error.
    """
    store = runtime().images
    if not output and sys.stdout.isatty():
        raise click.UsageError("refusing to write an archive to a terminal: use -o FILE or a pipe")
    # each layer is written once, whatever number of images share it
    layers = {d for ref in refs for d in store.get(ref).diff_ids}
    total = sum(store.layer_path(d).stat().st_size for d in layers)
    with ProgressLine("Saving", total, quiet=quiet) as progress:
        if output:
            store.save(refs, output, progress)
            return
        store.save(refs, sys.stdout.buffer, progress)
        sys.stdout.buffer.flush()


@image.command("tag")
@click.argument("source")
@click.argument("target")
def image_tag(source: str, target: str) -> None:
    """Give image SOURCE the name TARGET."""
    runtime().images.tag(source, target)


def _bytes_under(path: str) -> int | None:
    """The size of a file, or of every file under a directory (an OCI layout)."""
    try:
        if not Path(path).is_dir():
            return os.path.getsize(path)
        return sum(
            os.path.getsize(os.path.join(where, name))
            for where, _, names in os.walk(path)
            for name in names
        )
    except OSError:
        return None  # the command itself reports what is wrong with it


def _ago(stamp: str) -> str:
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "N/A"
    seconds = (datetime.now(UTC) - then).total_seconds()
    for length, unit in ((31536000, "year"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "Less than a minute ago"
