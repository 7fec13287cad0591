"""The ``btrfs`` array: a btrfs pool whose volumes are subvolumes.

Volume ``v`` is the subvolume ``<pool>/volumes/v``; its snapshots are
read-only snapshots ``<pool>/snapshots/v/<snap>``; clones and restores are
writable snapshots (constant time, blocks shared until written). ``size`` is
a quota-group limit on the bytes the subvolume references: writing past it
fails with EDQUOT. Everything goes through the btrfs ioctls
(`cargohold.core.kernel.btrfs`).

The pool, by ``CARGOHOLD_ARRAY_BTRFS_*`` settings:

``path``
    a directory on a mounted btrfs to keep the pool in (quotas must be on
    for ``size``: ``btrfs quota enable MOUNTPOINT``; we never turn them on
    on a filesystem we did not make);
``device``
    a block device for the pool: made btrfs if blank, used if it holds the
    btrfs this array made, refused otherwise;
neither
    an image file ``<driver root>/array/pool.img`` of ``image_size``
    (default 64g, sparse), made btrfs with quotas on.

The pool is mounted on ``<driver root>/array/pool`` when the driver starts
(again after a host restart), and unmounted when it closes if no volume of it
is mounted.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from cargohold.core import (
    CargoholdError,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    parse_size,
)
from cargohold.core.api.arrays import (
    ArrayCapabilities,
    ArrayContext,
    ArraySnapshot,
    ArrayVolume,
    BlockArray,
    Capacity,
)
from cargohold.core.kernel import blockdev, btrfs, loop, mounts
from cargohold.drivers.arrays.block import BlockVolumeDriver

DEFAULT_IMAGE_SIZE = "64g"
_MKFS_TIMEOUT = 120.0


class BtrfsArray(BlockArray):
    name = "btrfs"
    presents = "filesystem"
    default_size = None  # no size: no limit
    min_size = 1024**2
    capabilities = ArrayCapabilities(
        thin=True,
        snapshot=True,
        clone=True,
        clone_from_snapshot=True,
        resize=True,
        online_resize=True,
        usage=True,
        enforces_size=True,
    )

    def __init__(self, context: ArrayContext) -> None:
        super().__init__(context)
        settings = context.settings
        self._own_pool = not settings.get("path")
        if not self._own_pool:
            self.pool = Path(settings["path"])
            self._check_path_pool()
        else:
            self.pool = context.root / "pool"
            with self._pool_lock():
                self._mount_own_pool(settings.get("device"), settings.get("image_size"))
        for sub in ("volumes", "snapshots"):
            (self.pool / sub).mkdir(mode=0o700, exist_ok=True)

    # -- the pool --------------------------------------------------------------

    @contextlib.contextmanager
    def _pool_lock(self) -> Iterator[None]:
        fd = os.open(self.root / "pool.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _check_path_pool(self) -> None:
        try:
            self.pool.mkdir(mode=0o700, parents=True, exist_ok=True)
            on_btrfs = btrfs.is_btrfs(self.pool)
        except OSError as err:
            raise NotSupported(f"btrfs array: cannot use {self.pool}: {err.strerror}") from None
        if not on_btrfs:
            fstype = mounts.mount_of(self.pool).fstype
            raise NotSupported(
                f"btrfs array: the pool {self.pool} is on {fstype}, not btrfs: set "
                "CARGOHOLD_ARRAY_BTRFS_PATH to a directory on btrfs, or unset it to let the "
                "array make its own pool image"
            )

    def _mount_own_pool(self, device: str | None, image_size: str | None) -> None:
        self.pool.mkdir(mode=0o700, exist_ok=True)
        if mounts.is_mountpoint(self.pool):
            return
        marker = self.root / "pool.uuid"
        source = Path(device) if device else self.root / "pool.img"
        held: int | None = None
        if device is None and not source.exists():
            size = parse_size(image_size or DEFAULT_IMAGE_SIZE)
            with open(source, "xb") as image:
                image.truncate(size)
        try:
            if device is None:  # an image: through a loop device that goes with the mount
                found = loop.find(source)
                if found is None:
                    attached, held = loop.attach_held(source)
                    target = attached.path
                else:
                    target = found.path
            else:
                target = source
            have = blockdev.identify(target)
            recorded = marker.read_text().strip() if marker.exists() else None
            if have is None or have.type != "btrfs" or have.uuid != recorded:
                if have is not None or not blockdev.is_blank(target):
                    raise Conflict(
                        f"btrfs array: {source} already holds "
                        f"{'a ' + have.type + ' filesystem' if have else 'data'} this array did "
                        "not make; it is left untouched. Give a blank device, or another path"
                    )
                marker.write_text(_mkfs_btrfs(target) + "\n")
            mounts.mount(target, self.pool, "btrfs", 0, None)
            if not btrfs.quotas_enabled(self.pool):
                btrfs.enable_quotas(self.pool)  # our own filesystem: quotas are ours to turn on
        except BaseException:
            if device is None and mounts.is_mountpoint(self.pool):
                mounts.umount(self.pool, detach=True)
            if device is None and not marker.exists():
                source.unlink(missing_ok=True)  # the image we just made, never formatted
            raise
        finally:
            if held is not None:
                os.close(held)  # the mount holds the device now (autoclear)

    def close(self) -> None:
        """Unmount our own pool when no volume of it is mounted anywhere: the next
        start mounts it again in milliseconds, and a throwaway state directory
        leaves nothing behind. With volumes mounted it stays for them."""
        if not self._own_pool:
            return
        with self._pool_lock():
            if not mounts.is_mountpoint(self.pool):
                return
            pool = mounts.mount_of(self.pool)
            if any(
                e.device == pool.device and e.mount_id != pool.mount_id
                for e in mounts.mount_table()
            ):
                return  # a volume's bind mount (or someone's) still uses the filesystem
            with contextlib.suppress(OSError):  # busy: someone works in it; leave it be
                mounts.umount(self.pool)

    def capacity(self) -> Capacity:
        st = os.statvfs(self.pool)
        limits = [v.size for v in self.list() if v.size is not None]
        return Capacity(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, sum(limits))

    # -- volumes ---------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.pool / "volumes" / name

    def _existing(self, name: str) -> Path:
        path = self._path(name)
        if not btrfs.is_subvolume(path):
            raise NotFound(f"the btrfs array has no volume {name} (no subvolume {path})")
        return path

    def _limit(self, name: str, path: Path, size: int | None) -> None:
        if size is None:
            return
        if not btrfs.quotas_enabled(self.pool):
            raise NotSupported(
                f"volume {name}: option size needs quotas on the btrfs pool {self.pool}: "
                f"btrfs quota enable {mounts.mount_of(self.pool).target}"
            )
        btrfs.limit(path, size)

    def provision(self, name: str, size: int | None, *, thin: bool = True) -> ArrayVolume:
        path = self._path(name)
        if path.exists():
            raise Conflict(f"the btrfs array already has a volume {name} ({path})")
        btrfs.create_subvolume(path)
        try:
            self._limit(name, path, size)
        except BaseException:
            btrfs.delete_subvolume(path)
            raise
        return ArrayVolume(name, size, True)

    def delete(self, name: str) -> None:
        path = self._existing(name)
        snapshots = self.pool / "snapshots" / name
        if snapshots.is_dir():
            for snap in snapshots.iterdir():
                btrfs.delete_subvolume(snap)
            snapshots.rmdir()
        btrfs.delete_subvolume(path)

    def get(self, name: str) -> ArrayVolume:
        path = self._existing(name)
        used = btrfs.referenced(path)
        extra = {"subvolume": str(path)} | ({"referenced": str(used)} if used is not None else {})
        return ArrayVolume(name, btrfs.limit_of(path), True, extra=extra)

    def list(self) -> builtins.list[ArrayVolume]:
        names = sorted(p.name for p in (self.pool / "volumes").iterdir())
        return [self.get(n) for n in names if btrfs.is_subvolume(self._path(n))]

    def resize(self, name: str, size: int) -> ArrayVolume:
        path = self._existing(name)
        current = btrfs.limit_of(path)
        if current is not None and size < current:
            raise InvalidArgument(f"volume {name}: the btrfs array only grows volumes")
        self._limit(name, path, size)
        return self.get(name)

    def usage(self, name: str) -> int:
        path = self._existing(name)
        used = btrfs.referenced(path)
        if used is None:
            raise NotSupported(f"volume {name}: usage needs quotas on the btrfs pool {self.pool}")
        return used

    # -- host mapping: the subvolume is already here -------------------------

    def attach(self, name: str, *, read_only: bool = False) -> Path:
        return self._existing(name)

    def attached(self, name: str) -> Path | None:
        path = self._path(name)
        return path if btrfs.is_subvolume(path) else None

    def detach(self, name: str) -> None:
        pass

    # -- snapshots and clones --------------------------------------------------

    def snapshot(self, name: str, snapshot: str) -> ArraySnapshot:
        path = self._existing(name)
        directory = self.pool / "snapshots" / name
        directory.mkdir(mode=0o700, exist_ok=True)
        dest = directory / snapshot
        try:
            btrfs.snapshot(path, dest, read_only=True)
        except FileExistsError:
            raise Conflict(f"volume {name} already has a snapshot {snapshot}") from None
        return self._snapshot(name, dest)

    def _snapshot(self, name: str, path: Path) -> ArraySnapshot:
        made = datetime.fromtimestamp(path.stat().st_ctime, UTC).isoformat(timespec="seconds")
        return ArraySnapshot(name, path.name, btrfs.limit_of(self._path(name)), made[:-6] + "Z")

    def snapshots(self, name: str) -> builtins.list[ArraySnapshot]:
        self._existing(name)
        directory = self.pool / "snapshots" / name
        if not directory.is_dir():
            return []
        found = sorted(directory.iterdir(), key=lambda p: (p.stat().st_ctime_ns, p.name))
        return [self._snapshot(name, p) for p in found if btrfs.is_subvolume(p)]

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self._existing(name)
        path = self.pool / "snapshots" / name / snapshot
        if not btrfs.is_subvolume(path):
            raise NotFound(f"volume {name} has no snapshot {snapshot}")
        btrfs.delete_subvolume(path)

    def clone(self, source: str, name: str, *, snapshot: str | None = None) -> ArrayVolume:
        origin = self._existing(source)
        size = btrfs.limit_of(origin)
        if snapshot is not None:
            origin = self.pool / "snapshots" / source / snapshot
            if not btrfs.is_subvolume(origin):
                raise NotFound(f"volume {source} has no snapshot {snapshot}")
        dest = self._path(name)
        try:
            btrfs.snapshot(origin, dest)  # writable, so an independent volume
        except FileExistsError:
            raise Conflict(f"the btrfs array already has a volume {name} ({dest})") from None
        try:
            self._limit(name, dest, size)
        except BaseException:
            btrfs.delete_subvolume(dest)
            raise
        return ArrayVolume(name, size, True, f"{source}@{snapshot}" if snapshot else source)


def _mkfs_btrfs(target: Path) -> str:
    try:
        result = subprocess.run(
            ["mkfs.btrfs", "-q", str(target)],
            capture_output=True,
            text=True,
            timeout=_MKFS_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise NotSupported(
            "btrfs array: mkfs.btrfs is missing: apt-get install btrfs-progs"
        ) from None
    except subprocess.TimeoutExpired:
        raise CargoholdError(f"btrfs array: mkfs.btrfs on {target} did not finish") from None
    found = blockdev.identify(target)
    if result.returncode != 0 or found is None:
        raise CargoholdError(
            f"btrfs array: mkfs.btrfs on {target} failed: {result.stderr.strip()[:400]}"
        )
    return found.uuid


class BtrfsDriver(BlockVolumeDriver):
    """Volumes as subvolumes of the ``btrfs`` array."""

    name = "btrfs"
    array_class = BtrfsArray
    example_options: ClassVar[Mapping[str, str]] = {"size": "64m"}
