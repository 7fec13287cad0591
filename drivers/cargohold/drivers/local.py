"""The ``local`` driver: Docker's local volumes, same options, same layout.

A volume is the directory ``<root>/<name>/_data``. With ``type`` and
``device`` the device is mounted there on the first mount and unmounted after
the last one, as Docker's local driver does::

    -o type=tmpfs -o device=tmpfs -o o=size=64m      memory-backed
    -o type=ext4 -o device=/dev/loop3                 a block device
    -o type=none -o o=bind -o device=/srv/data        another directory
    -o type=ext4 -o device=/srv/disk.img              an image file (loop, freed on unmount)

``size`` limits a plain volume with a kernel-enforced quota where the state
directory's filesystem has one (see `cargohold.drivers.quota`), and sets the
size of a tmpfs volume. Mounts go through the mount system call, except an
image file, which needs mount(8) to attach a loop device.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cargohold.core import (
    Capabilities,
    CargoholdError,
    InUse,
    InvalidArgument,
    NotFound,
    Option,
)
from cargohold.core.kernel import mounts
from cargohold.drivers import quota
from cargohold.drivers.datadir import DataDirDriver

# mount errors that mean "the options are wrong", as opposed to a passing failure
_BAD_OPTION_ERRNOS = (errno.EINVAL, errno.ENODEV, errno.ENOTBLK, errno.ENOENT, errno.ENOTDIR)


class LocalDriver(DataDirDriver):
    name = "local"
    options = (
        Option("type", help="filesystem type to mount, as mount -t (tmpfs, ext4, xfs, none)"),
        Option("device", help="what to mount: tmpfs, a block device, an image file, a directory"),
        Option("o", help="mount options, as mount -o (size=64m, bind, ro, ...)"),
        Option(
            "size",
            type="size",
            help="size limit: a quota on a plain volume (btrfs with quotas, xfs with "
            "prjquota), or the size of a tmpfs volume",
        ),
    )
    capabilities = Capabilities(usage=True)

    # -- create / remove -----------------------------------------------------

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        _check_device_options(name, opts)
        size: int | None = None if _typed(opts) else opts.get("size")
        limiter = quota.limiter_for(self.root) if size is not None else None
        data = self._data(name)
        existed = data.parent.exists()
        data.parent.mkdir(mode=0o701, exist_ok=True)
        if size is None or limiter is None:
            data.mkdir(mode=0o755, exist_ok=True)
            return
        try:
            quota.create_limited_dir(data, size, limiter)
        except BaseException:
            if not existed:  # leave nothing half-made; never touch an existing volume
                with contextlib.suppress(OSError):
                    quota.remove_limited_dir(data)
                    data.parent.rmdir()
            raise

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        volume_dir = self.root / name
        if not volume_dir.exists():
            raise NotFound(f"no such volume: {name}")
        data = self._data(name)
        if _typed(opts):
            mounts.unmount_all(data)
        # Deleting through a mount would delete someone else's data: refuse.
        inside = [m.target for m in mounts.mounts_under(volume_dir)]
        if inside:
            raise InUse(
                f"volume {name} has filesystems mounted inside it ({', '.join(inside)}): "
                "unmount them, then remove the volume again"
            )
        if opts.get("size") is not None and not _typed(opts):
            quota.remove_limited_dir(data)
        shutil.rmtree(volume_dir)

    # -- mount / unmount -----------------------------------------------------

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        data = self._data(name)
        if not data.is_dir():
            raise NotFound(f"no such volume: {name} (its data directory {data} is gone)")
        # Already mounted: a mount again after a crash keeps what is there.
        if _typed(opts) and not mounts.is_mountpoint(data):
            _mount_device(name, data, opts)
        return data

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        data = self._data(name)
        if not (_typed(opts) and mounts.is_mountpoint(data)):
            return
        try:
            mounts.make_private(data)  # so the unmount stays ours (see make_private)
            for inner in mounts.mounts_under(data):  # mounts that came in with rbind
                if inner.target != os.path.realpath(data):
                    mounts.umount(inner.target, detach=True)
            mounts.umount(data)
        except OSError as err:
            if err.errno == errno.EBUSY:
                raise InUse(
                    f"volume {name}: {opts['type']} on {data} is still in use by a process; "
                    "stop it (see: fuser -vm DIR) and unmount again"
                ) from None
            raise CargoholdError(f"volume {name}: unmounting {data} failed: {err}") from None

    # -- report --------------------------------------------------------------

    def usage(self, name: str) -> int:
        total = 0
        for directory, _, files in os.walk(self._data(name)):
            for file in files:
                with contextlib.suppress(FileNotFoundError):  # deleted while we walk
                    total += os.lstat(os.path.join(directory, file)).st_blocks * 512
        return total


def _typed(opts: Mapping[str, Any]) -> bool:
    return bool(opts.get("type"))


def _check_device_options(name: str, opts: Mapping[str, Any]) -> None:
    """Refuse contradictory options at create time, before anything is made."""
    fstype, device, o = opts.get("type"), opts.get("device"), opts.get("o")
    if bool(fstype) != bool(device):
        raise InvalidArgument(
            f"volume {name}: options type and device go together "
            "(e.g. -o type=tmpfs -o device=tmpfs)"
        )
    if o and not fstype:
        raise InvalidArgument(f"volume {name}: option o needs type and device as well")
    if not fstype:
        return
    flags, data = mounts.parse_options(str(o or ""))
    if flags & mounts.MS_BIND:
        source = Path(str(device))
        if not source.is_absolute() or not source.is_dir():
            raise InvalidArgument(
                f"volume {name}: device {device} of a bind mount must be an existing "
                "directory, given as an absolute path"
            )
    if opts.get("size") is not None:
        if fstype != "tmpfs":
            raise InvalidArgument(
                f"volume {name}: option size applies to plain and tmpfs volumes; "
                f"a {fstype} device has the size it was made with"
            )
        if any(word.startswith("size=") for word in data.split(",")):
            raise InvalidArgument(
                f"volume {name}: the tmpfs size is given twice (option size and o=size=); "
                "give it once"
            )


def _mount_device(name: str, data: Path, opts: Mapping[str, Any]) -> None:
    fstype, device = str(opts["type"]), str(opts["device"])
    flags, fsdata = mounts.parse_options(str(opts.get("o") or ""))
    if fstype == "tmpfs" and opts.get("size") is not None:
        fsdata = ",".join(filter(None, (fsdata, f"size={int(opts['size'])}")))
    what = f"volume {name}: mounting {fstype} from {device} on {data}"
    try:
        if flags & mounts.MS_BIND:
            mounts.bind(
                device,
                data,
                readonly=bool(flags & mounts.MS_RDONLY),
                recursive=bool(flags & mounts.MS_REC),
            )
        elif os.path.isfile(device):
            _mount_image(what, fstype, device, data, str(opts.get("o") or ""))
        else:
            mounts.mount(device, data, fstype, flags, fsdata or None)
    except OSError as err:
        kind = InvalidArgument if err.errno in _BAD_OPTION_ERRNOS else CargoholdError
        raise kind(
            f"{what} failed: {os.strerror(err.errno or 0)}. Check the type, device and o options"
        ) from None


def _mount_image(what: str, fstype: str, image: str, data: Path, o: str) -> None:
    """An image file needs a loop device; mount(8) attaches one that goes with the mount."""
    options = ",".join(filter(None, ("loop", o)))
    result = subprocess.run(
        ["mount", "-t", fstype, "-o", options, image, str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InvalidArgument(
            f"{what} failed: {result.stderr.strip() or result.stdout.strip()}. "
            "Check the type, device and o options"
        )
