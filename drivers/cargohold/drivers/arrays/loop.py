"""The ``loop`` array: sparse image files in a pool directory, attached as loop devices.

Volume ``v`` is ``<pool>/v.img``, its snapshots ``<pool>/v.snapshots/<snap>.img``
(read-only files). Thin by default (a sparse file); ``thin=false`` allocates
every block at once. Snapshots and clones are reflinks where the pool's
filesystem has them (xfs made with ``reflink=1``, btrfs): constant time, blocks
shared until written; elsewhere a sparse copy of the extents that hold data.

Devices are attached through the loop ioctls (`cargohold.core.kernel.loop`)
with autoclear: once the volume is mounted, this process lets go of the
device and the kernel frees it when the filesystem is unmounted, so neither
a crash nor an error path leaves one behind. The pool defaults to
``<driver root>/array/pool``; ``CARGOHOLD_ARRAY_LOOP_POOL`` puts it elsewhere
and ``CARGOHOLD_ARRAY_LOOP_CAPACITY`` caps it below its filesystem's size.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from cargohold.core import Conflict, InvalidArgument, NotFound, NotSupported, parse_size
from cargohold.core.api.arrays import (
    ArrayCapabilities,
    ArrayContext,
    ArraySnapshot,
    ArrayVolume,
    BlockArray,
    Capacity,
)
from cargohold.core.kernel import btrfs, files, loop
from cargohold.drivers.arrays.block import BlockVolumeDriver

_WARM_DEVICES = 4
# filesystems whose files cannot be sparse or cannot back a loop device well
_NO_SPARSE = {0x4D44: "vfat", 0x2011BAB0: "exfat", 0x5346544E: "ntfs"}


class LoopArray(BlockArray):
    name = "loop"
    presents = "block"
    capabilities = ArrayCapabilities(
        thin=True,
        thick=True,
        snapshot=True,
        clone=True,
        clone_from_snapshot=True,
        resize=True,
        online_resize=True,
        usage=True,
    )

    def __init__(self, context: ArrayContext) -> None:
        super().__init__(context)
        self.pool = Path(context.settings.get("pool") or context.root / "pool")
        try:
            self.pool.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise NotSupported(
                f"loop array: cannot use {self.pool} as its pool ({err.strerror}); "
                "set CARGOHOLD_ARRAY_LOOP_POOL to a writable directory"
            ) from None
        magic = btrfs.filesystem_magic(self.pool)
        if magic in _NO_SPARSE:
            raise NotSupported(
                f"loop array: the pool {self.pool} is on {_NO_SPARSE[magic]}, which has no "
                "sparse files; set CARGOHOLD_ARRAY_LOOP_POOL to a directory on ext4, xfs or btrfs"
            )
        cap = context.settings.get("capacity")
        self.cap = parse_size(cap) if cap else None
        # name -> (device, descriptor keeping the autoclear device attached)
        self._held: dict[str, tuple[Path, int]] = {}
        self._warm: list[str] = []  # released after create, still held: oldest first

    def _image(self, name: str) -> Path:
        return self.pool / f"{name}.img"

    def _snapshot_dir(self, name: str) -> Path:
        return self.pool / f"{name}.snapshots"

    def _existing(self, name: str) -> Path:
        image = self._image(name)
        if not image.is_file():
            raise NotFound(f"the loop array has no volume {name} (no {image})")
        return image

    # -- the pool --------------------------------------------------------------

    def capacity(self) -> Capacity:
        st = os.statvfs(self.pool)
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        if self.cap is not None:
            total, free = min(total, self.cap), min(free, self.cap)
        provisioned = sum(p.stat().st_size for p in self.pool.glob("*.img"))
        return Capacity(total=total, free=free, provisioned=provisioned)

    # -- volumes ---------------------------------------------------------------

    def provision(self, name: str, size: int | None, *, thin: bool = True) -> ArrayVolume:
        size = size or self.default_size or 0
        image = self._image(name)
        try:
            fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise Conflict(f"the loop array already has a volume {name} ({image})") from None
        try:
            os.ftruncate(fd, size)
            if not thin:
                os.posix_fallocate(fd, 0, size)
        except OSError as err:
            os.close(fd)
            image.unlink(missing_ok=True)
            if err.errno == errno.ENOSPC:
                raise InvalidArgument(
                    f"volume {name}: the pool {self.pool} has no room for {size} bytes "
                    "allocated at once; ask for less, or a thin volume"
                ) from None
            raise
        os.close(fd)
        return ArrayVolume(name, size, thin, extra={"image": str(image)})

    def delete(self, name: str) -> None:
        image = self._existing(name)
        self.detach(name)
        snapshots = self._snapshot_dir(name)
        if snapshots.is_dir():
            for snap in snapshots.iterdir():
                snap.unlink()
            snapshots.rmdir()
        image.unlink()

    def get(self, name: str) -> ArrayVolume:
        st = self._existing(name).stat()
        allocated = st.st_blocks * 512
        extra = {"image": str(self._image(name)), "allocated": str(allocated)}
        return ArrayVolume(name, st.st_size, allocated < st.st_size, extra=extra)

    def list(self) -> builtins.list[ArrayVolume]:
        return [self.get(p.stem) for p in sorted(self.pool.glob("*.img")) if p.is_file()]

    def resize(self, name: str, size: int) -> ArrayVolume:
        image = self._existing(name)
        if size < image.stat().st_size:
            raise InvalidArgument(f"volume {name}: the loop array only grows volumes")
        os.truncate(image, size)
        for device in loop.find_all(image):
            loop.set_capacity(device)
        return self.get(name)

    def usage(self, name: str) -> int:
        return self._existing(name).stat().st_blocks * 512

    # -- host mapping ----------------------------------------------------------

    def attach(self, name: str, *, read_only: bool = False) -> Path:
        image = self._existing(name)
        if name in self._held:  # attached by us, and held open: it cannot have gone
            return self._held[name][0]
        found = loop.find(image)
        if found is not None:
            return found.path
        device, fd = loop.attach_held(image, read_only=read_only, autoclear=True)
        self._held[name] = (device.path, fd)
        return device.path

    def attached(self, name: str) -> Path | None:
        found = loop.find(self._image(name))
        return found.path if found else None

    def release(self, name: str) -> None:
        # Keep the device (autoclear, held open) for the mount that usually follows a
        # create; a few at most, so a long-lived process does not hoard loop devices.
        self._warm = [n for n in self._warm if n != name and n in self._held] + [name]
        while len(self._warm) > _WARM_DEVICES:
            self.mounted(self._warm.pop(0))

    def mounted(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is not None:
            os.close(held[1])  # the mount holds the device now; autoclear frees it with it

    def detach(self, name: str) -> None:
        self.mounted(name)
        image = self._image(name)
        if image.exists():
            for device in loop.find_all(image):
                loop.detach(device, image)

    # -- snapshots and clones --------------------------------------------------

    def snapshot(self, name: str, snapshot: str) -> ArraySnapshot:
        image = self._existing(name)
        directory = self._snapshot_dir(name)
        directory.mkdir(mode=0o700, exist_ok=True)
        dest = directory / f"{snapshot}.img"
        if dest.exists():
            raise Conflict(f"volume {name} already has a snapshot {snapshot}")
        try:
            files.clone_file(image, dest, mode=0o400)
        except FileExistsError:
            raise Conflict(f"volume {name} already has a snapshot {snapshot}") from None
        return self._snapshot(name, dest)

    def _snapshot(self, name: str, path: Path) -> ArraySnapshot:
        st = path.stat()
        made = datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds")
        return ArraySnapshot(name, path.stem, st.st_size, made.replace("+00:00", "Z"))

    def snapshots(self, name: str) -> builtins.list[ArraySnapshot]:
        self._existing(name)
        directory = self._snapshot_dir(name)
        if not directory.is_dir():
            return []
        found = [p for p in directory.glob("*.img") if p.is_file()]
        found.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [self._snapshot(name, p) for p in found]

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self._existing(name)
        try:
            (self._snapshot_dir(name) / f"{snapshot}.img").unlink()
        except FileNotFoundError:
            raise NotFound(f"volume {name} has no snapshot {snapshot}") from None
        with contextlib.suppress(OSError):  # the last one: the directory goes too
            self._snapshot_dir(name).rmdir()

    def clone(self, source: str, name: str, *, snapshot: str | None = None) -> ArrayVolume:
        origin = self._existing(source)
        if snapshot is not None:
            origin = self._snapshot_dir(source) / f"{snapshot}.img"
            if not origin.is_file():
                raise NotFound(f"volume {source} has no snapshot {snapshot}")
        dest = self._image(name)
        try:
            how = files.clone_file(origin, dest, mode=0o600)
        except FileExistsError:
            raise Conflict(f"the loop array already has a volume {name} ({dest})") from None
        ref = f"{source}@{snapshot}" if snapshot else source
        volume = self.get(name)
        return ArrayVolume(name, volume.size, True, ref, {**volume.extra, "copy": how})

    def close(self) -> None:
        for name in builtins.list(self._held):
            self.mounted(name)


class LoopDriver(BlockVolumeDriver):
    """Block volumes on the ``loop`` array."""

    name = "loop"
    array_class = LoopArray
    example_options: ClassVar[Mapping[str, str]] = {"size": "64m"}
