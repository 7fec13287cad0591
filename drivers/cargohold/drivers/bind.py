"""The ``bind`` driver: a named volume that is a host directory.

The directory (``source``) is bind-mounted, with a real kernel mount, at
``<root>/<name>/_data`` on the first mount and unmounted after the last, so
``readonly`` and ``propagation`` hold for whoever uses that path:

``readonly``
    a read-only bind (submounts included, where the kernel has
    mount_setattr): writes through the volume fail with EROFS while the
    directory itself stays writable.
``propagation``
    as Docker's ``bind-propagation``; ``rprivate`` by default. ``rshared``
    and ``shared`` need the source on a shared mount, ``rslave`` and
    ``slave`` on a shared or slave one: mounts made later under the source
    then appear in the volume.

The directory belongs to the user: removing the volume removes only the
driver's empty mountpoint, never the directory or anything in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from cargohold.core import (
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Option,
)
from cargohold.core.kernel import mounts
from cargohold.drivers.datadir import DataDirDriver


class BindDriver(DataDirDriver):
    name = "bind"
    example_options: ClassVar[Mapping[str, str]] = {"source": "{tmp}"}
    removes_data = False  # the host directory is the user's
    options = (
        Option("source", required=True, help="absolute path of the host directory"),
        Option(
            "create",
            type="bool",
            default=False,
            help="create the source directory if it is missing (default: refuse)",
        ),
        Option("readonly", type="bool", default=False, help="mount read-only"),
        Option(
            "propagation",
            default="rprivate",
            choices=tuple(mounts.PROPAGATION),
            help="mount propagation: rprivate (default), rshared, rslave, private, ...",
        ),
    )

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        source = _source(name, opts)
        if source.exists() and not source.is_dir():
            raise InvalidArgument(
                f"volume {name}: source {source} is a file, not a directory; "
                "a bind volume mounts a directory"
            )
        _check_propagation(name, source, opts.get("propagation"))
        if not source.exists():
            if not opts.get("create"):
                raise NotFound(
                    f"volume {name}: source {source} does not exist; "
                    "create it, or pass -o create=true"
                )
            source.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._data(name).mkdir(mode=0o755, parents=True, exist_ok=True)

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        volume_dir = self.root / name
        if not volume_dir.exists():
            raise NotFound(f"no such volume: {name}")
        data = self._data(name)
        _release(data)
        inside = [m.target for m in mounts.mounts_under(volume_dir)]
        if inside:
            raise InUse(f"volume {name}: {', '.join(inside)} is still mounted; unmount it first")
        # rmdir, never a recursive delete: only our empty mountpoint may go.
        try:
            if data.exists():
                data.rmdir()
            volume_dir.rmdir()
        except OSError as err:
            raise InUse(
                f"volume {name}: cannot remove {volume_dir}: {err.strerror}; "
                "something put files in the driver's mountpoint"
            ) from None

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        data = self._data(name)
        if not data.is_dir():
            raise NotFound(f"no such volume: {name}")
        if mounts.is_mountpoint(data):  # mounted before a crash: keep it
            return data
        source = _source(name, opts)
        if not source.is_dir():
            raise NotFound(
                f"volume {name}: source directory {source} is gone; "
                "recreate it, or remove the volume"
            )
        _check_propagation(name, source, opts.get("propagation"))
        try:
            mounts.bind(
                source,
                data,
                readonly=bool(opts.get("readonly")),
                propagation=opts.get("propagation") or "rprivate",
            )
        except OSError as err:
            raise InvalidArgument(f"volume {name}: bind mount of {source} failed: {err}") from None
        return data

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        _release(self._data(name))


def _source(name: str, opts: Mapping[str, Any]) -> Path:
    source = Path(str(opts["source"]))
    if not source.is_absolute():
        raise InvalidArgument(f"volume {name}: source {source} must be an absolute path")
    return source


def _release(data: Path) -> None:
    """Unmount the volume without touching the source's own mounts (see `mounts.make_private`)."""
    mounts.unmount_all(data)


def _check_propagation(name: str, source: Path, propagation: str | None) -> None:
    """rshared and rslave only mean something when the source's mount passes mounts on."""
    if propagation not in ("shared", "rshared", "slave", "rslave"):
        return
    existing = source
    while not existing.exists():
        existing = existing.parent
    holder = mounts.mount_of(existing)
    if propagation.endswith("shared") and not holder.shared:
        needed = "shared"
    elif propagation.endswith("slave") and not (holder.shared or holder.slave):
        needed = "shared or slave"
    else:
        return
    raise NotSupported(
        f"volume {name}: propagation {propagation} needs {source} on a {needed} mount, "
        f"and {holder.target} is private; run: mount --make-rshared {holder.target}"
    )
