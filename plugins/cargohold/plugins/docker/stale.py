"""``cargohold volume unmount``: list and release references whose Unmount never came.

A Docker engine that crashes never sends the Unmount of the containers it
lost, so their mount IDs keep the volume mounted and refuse its removal. The
server must not guess which references are stale (a ``plugin check`` also
activates it, and live-restore keeps containers running across an engine
restart), so the operator decides, with this command.
"""

from __future__ import annotations

import click

from cargohold.core.api.errors import NotFound
from cargohold.core.cli import runtime, table
from cargohold.core.volumes.names import validate_volume_name


@click.command("unmount")
@click.argument("name")
@click.option(
    "--id", "ids", multiple=True, metavar="MOUNT_ID", help="release this reference (repeatable)"
)
@click.option("--all", "all_refs", is_flag=True, help="release every reference of the volume")
def unmount_command(name: str, ids: tuple[str, ...], all_refs: bool) -> None:
    """List a volume's references, or release stale ones.

    Without --id or --all, list the references of volume NAME.

    For references left by a Docker engine that crashed: check with docker ps
    that no container still uses the volume first. The driver unmounts the
    volume when its last reference goes. References of containers cargohold
    itself runs are refused: stop or remove those containers instead.
    """
    if ids and all_refs:
        raise click.UsageError("give --id or --all, not both")
    volumes = runtime().volumes
    record = volumes.store.get(validate_volume_name(name))
    if record is None:
        raise NotFound(f"no such volume: {name}")
    if not ids and not all_refs:
        if not record.refs:
            click.echo(f"volume {name} has no references")
            return
        rows = [
            [mount_id, str(count), "cargohold container" if mount_id in record.holders else "-"]
            for mount_id, count in sorted(record.refs.items())
        ]
        table(rows, ["MOUNT ID", "COUNT", "HELD BY"])
        click.echo(f"release with: cargohold volume unmount {name} --id MOUNT_ID (or --all)")
        return
    dropped = volumes.drop_refs(name, None if all_refs else ids)
    for mount_id, count in dropped.items():
        click.echo(f"released {mount_id} ({count} mount{'s' * (count != 1)})")
    after = volumes.store.get(name)
    if after is not None and not after.refs:
        click.echo(f"volume {name} has no references left: it is unmounted")
