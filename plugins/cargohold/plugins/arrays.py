"""Storage arrays: the ``loop`` and ``btrfs`` drivers, any array a plugin registers,
and ``cargohold volume snapshot create|ls|rm``.

A backend registered through ``cargohold_block_arrays`` by another plugin (a
vendor's array) becomes the volume driver of its name on first use, through
``cargohold_find_volume_driver``: no driver class to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from cargohold.core import DriverContext, VolumeDriver, hookimpl

if TYPE_CHECKING:
    from cargohold.core.api.arrays import BlockArray


@hookimpl
def cargohold_volume_drivers() -> Sequence[type[VolumeDriver]]:
    from cargohold.drivers.arrays.btrfs import BtrfsDriver
    from cargohold.drivers.arrays.loop import LoopDriver

    return [LoopDriver, BtrfsDriver]


@hookimpl
def cargohold_block_arrays() -> Sequence[type[BlockArray]]:
    from cargohold.drivers.arrays.btrfs import BtrfsArray
    from cargohold.drivers.arrays.loop import LoopArray

    return [LoopArray, BtrfsArray]


@hookimpl
def cargohold_find_volume_driver(name: str, context: DriverContext) -> VolumeDriver | None:
    if context.hook is None:
        return None
    for arrays in context.hook.cargohold_block_arrays():
        for array in arrays:
            if array.name == name:
                from cargohold.drivers.arrays.block import BlockVolumeDriver

                attrs: dict[str, Any] = {"name": name, "array_class": array}
                cls = type(f"{array.__name__}Driver", (BlockVolumeDriver,), attrs)
                driver: VolumeDriver = cls(context)
                return driver
    return None


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    volume = group.commands.get("volume")
    if isinstance(volume, click.Group):
        volume.add_command(snapshot)


@click.group()
def snapshot() -> None:
    """Snapshots of volumes on storage arrays (drivers loop, btrfs).

    Restore one into a new volume with: cargohold volume create -d DRIVER
    -o snapshot=VOLUME@SNAPSHOT NEW
    """


@snapshot.command("create")
@click.argument("volume")
@click.argument("name", required=False)
def snapshot_create(volume: str, name: str | None) -> None:
    """Take a snapshot of VOLUME, named NAME.

    NAME defaults to the time, as 20260102T030405Z.
    """
    from datetime import UTC, datetime

    from cargohold.core.cli import runtime

    name = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runtime().volumes.snapshot(volume, name)
    click.echo(name)


@snapshot.command("ls")
@click.argument("volume")
@click.option("-q", "--quiet", is_flag=True, help="only the names")
def snapshot_ls(volume: str, quiet: bool) -> None:
    """List the snapshots of VOLUME, oldest first."""
    from cargohold.core.cli import runtime, table

    found = runtime().volumes.snapshots(volume)
    if quiet:
        for snap in found:
            click.echo(snap.name)
        return
    rows = [[s.name, s.created_at, "-" if s.size is None else str(s.size)] for s in found]
    table(rows, ["NAME", "CREATED", "SIZE"])


@snapshot.command("rm")
@click.argument("volume")
@click.argument("names", nargs=-1, required=True)
def snapshot_rm(volume: str, names: tuple[str, ...]) -> None:
    """Remove snapshots NAMES of VOLUME."""
    from cargohold.core.cli import act_on_each, runtime

    volumes = runtime().volumes
    act_on_each(names, lambda name: volumes.remove_snapshot(volume, name))
