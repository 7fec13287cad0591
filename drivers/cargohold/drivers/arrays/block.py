"""The generic block-volume driver: any `BlockArray` as a volume driver.

For a backend that presents block devices it makes the filesystem on create
(``fs=ext4|xfs``), checks it on attach after an unclean stop, mounts it on
``<root>/volumes/<name>/_data``, grows it online after a resize and freezes
it while a snapshot or clone is taken. For a backend that presents a directory
(a btrfs subvolume) it bind-mounts that directory there instead.

It never formats a device holding anything: a device is formatted only when
it is blank (`blockdev.is_blank`), and the UUID of the filesystem made is kept
in ``<root>/volumes/<name>/filesystem``; a device whose filesystem has another
UUID is refused. ``<root>/volumes/<name>/mounted`` exists while the driver
has the volume mounted: after a host restart (or anything else that took the
mount away) the driver mounts such volumes again when it starts, checking the
filesystem first, so the mountpoints the core recorded stay good.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from cargohold.core import (
    Capabilities,
    CargoholdError,
    Conflict,
    DriverContext,
    DriverVolume,
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Option,
    VolumeDriver,
)
from cargohold.core.api.arrays import (
    ArrayContext,
    ArraySnapshot,
    ArrayVolume,
    BlockArray,
    settings_from_environment,
)
from cargohold.core.kernel import blockdev, mounts
from cargohold.drivers.arrays import filesystems

# Docker's rule for volume names, used for `from`, `snapshot` and snapshot names
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SNAP_TIMEOUT_HINT = "check that nothing holds the filesystem frozen (fsfreeze -u)"


def check_name(what: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidArgument(
            f"{what} {value!r} is not a valid name: use letters, digits and _.- "
            "(starting with a letter or digit), at most 128 characters"
        )
    return value


def parse_snapshot_ref(value: str) -> tuple[str, str]:
    """``VOL@SNAP`` -> (volume, snapshot)."""
    volume, at, snapshot = value.partition("@")
    if not at:
        raise InvalidArgument(f"option snapshot={value!r}: give it as VOLUME@SNAPSHOT")
    return check_name("volume", volume), check_name("snapshot", snapshot)


class BlockVolumeDriver(VolumeDriver):
    """A volume driver over ``array_class``; subclasses set `name` and `array_class`."""

    array_class: ClassVar[type[BlockArray]]
    removes_data = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        array = getattr(cls, "array_class", None)
        if array is None:
            return
        caps = array.capabilities
        cls.capabilities = Capabilities(
            snapshot=caps.snapshot, clone=caps.clone, resize=caps.resize, usage=caps.usage
        )
        options = [
            Option(
                "size",
                type="size",
                help="the volume's size (10g, 512m); "
                + ("it is enforced" if array.presents == "block" else "a quota limit"),
            )
        ]
        if array.presents == "block":
            options.append(
                Option(
                    "fs", default="ext4", choices=filesystems.FILESYSTEMS, help="filesystem to make"
                )
            )
        if caps.thick:
            options.append(
                Option("thin", type="bool", default=True, help="allocate blocks on first write")
            )
        if caps.clone:
            options.append(Option("from", help="make the volume a clone of volume FROM"))
        if caps.clone_from_snapshot:
            options.append(
                Option("snapshot", help="restore: make the volume from snapshot VOLUME@SNAPSHOT")
            )
        cls.options = tuple(options)

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        (self.root / "volumes").mkdir(mode=0o700, parents=True, exist_ok=True)
        area = self.root / "array"
        area.mkdir(mode=0o700, exist_ok=True)
        settings = settings_from_environment(self.name)
        self.array = self.array_class(ArrayContext(area, settings))
        self.restore()

    @property
    def block(self) -> bool:
        return self.array.presents == "block"

    # -- layout ----------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / "volumes" / name

    def _data(self, name: str) -> Path:
        return self._dir(name) / "_data"

    @contextlib.contextmanager
    def _held(self, name: str) -> Iterator[None]:
        """The driver's own lock on one volume, between a restore and the core's calls."""
        fd = os.open(self.root / "volumes" / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _marker(self, name: str) -> tuple[str, str] | None:
        try:
            fs, uuid = (self._dir(name) / "filesystem").read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        return fs, uuid

    # -- create / remove -------------------------------------------------------

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        size: int | None = opts.get("size")
        fs = str(opts.get("fs") or "ext4")
        source, snap = self._source(name, opts)
        if self._dir(name).is_dir() and self._exists(name):
            return  # created before: nothing asked differs (the core checked)
        if self.block and (reason := filesystems.tool_missing(fs)):
            raise InvalidArgument(f"volume {name}: {reason}")
        self._check_size(name, size)
        existed = self._exists(name)
        if existed and source:
            raise Conflict(
                f"volume {name}: the {self.name} array already holds a volume of that name, "
                "so it cannot be made from another: remove it from the array first"
            )
        self._data(name).mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            if source is None and not existed:
                self.array.provision(name, size or self.array.default_size, thin=_thin(opts))
            elif source is not None:
                self._clone(source, name, snap, size)
            # a clone carries its source's filesystem, checked when it is mounted
            if self.block and (source is None or self._marker(name) is None):
                self._adopt_or_format(name, fs, fresh=not existed and source is None)
        except BaseException:
            if not existed:
                with contextlib.suppress(CargoholdError, OSError):
                    self.array.detach(name)
                    self.array.delete(name)
            shutil.rmtree(self._dir(name), ignore_errors=True)
            raise

    def _exists(self, name: str) -> bool:
        try:
            self.array.get(name)
        except NotFound:
            return False
        return True

    def _source(self, name: str, opts: Mapping[str, Any]) -> tuple[str | None, str | None]:
        origin, snapshot = opts.get("from"), opts.get("snapshot")
        if origin and snapshot:
            raise InvalidArgument(f"volume {name}: give option from or snapshot, not both")
        if snapshot:
            volume, snap = parse_snapshot_ref(str(snapshot))
            if snap not in {s.name for s in self._snapshots_of(volume, "snapshot")}:
                raise InvalidArgument(
                    f"volume {name}: volume {volume} has no snapshot {snap} "
                    f"(see: cargohold volume snapshot ls {volume})"
                )
            return volume, snap
        if origin:
            volume = check_name("volume", str(origin))
            if volume == name or not self._exists(volume):
                raise InvalidArgument(
                    f"volume {name}: option from={volume}: no such {self.name} volume to clone "
                    f"(see: cargohold volume ls --filter driver={self.name})"
                )
            return volume, None
        return None, None

    def _check_size(self, name: str, size: int | None) -> None:
        if size is None:
            return
        if size < self.array.min_size:
            raise InvalidArgument(
                f"volume {name}: size {size} bytes is below the {self.name} array's "
                f"minimum of {self.array.min_size // 1024**2} MiB"
            )
        capacity = self.array.capacity()
        if size > capacity.total:
            raise InvalidArgument(
                f"volume {name}: size {size} bytes exceeds the whole {self.name} pool "
                f"({capacity.total} bytes): ask for less, or give the pool more room"
            )

    def _clone(self, source: str, name: str, snap: str | None, size: int | None) -> None:
        origin = self.array.get(source)
        if size is not None and origin.size is not None and size < origin.size:
            raise InvalidArgument(
                f"volume {name}: size {size} is smaller than its source {source} "
                f"({origin.size} bytes); filesystems do not shrink: ask for at least that"
            )
        if snap is None:
            self._consistent(source, lambda: self.array.clone(source, name))
        else:
            self.array.clone(source, name, snapshot=snap)
        marker = self._dir(source) / "filesystem"
        if marker.exists():
            shutil.copyfile(marker, self._dir(name) / "filesystem")
        if size is not None and origin.size is not None and size > origin.size:
            self.array.resize(name, size)
            self._grow_offline(name)

    def _adopt_or_format(self, name: str, fs: str, *, fresh: bool) -> None:
        """Format a blank device; keep one holding the filesystem we made; refuse others.

        A volume the array has just made (``fresh``) is blank by the array's word;
        any other is read first, so that nothing anyone wrote is ever formatted.
        """
        device = self.array.attach(name)
        try:
            found = blockdev.identify(device)
            marker = self._marker(name)
            if found is not None and marker == (found.type, found.uuid):
                self.array.release(name)
                return
            if found is not None or not (fresh or blockdev.is_blank(device)):
                what = f"a {found.type} filesystem" if found else "data (not blank)"
                raise Conflict(
                    f"volume {name}: {device} of the {self.name} array already holds {what} "
                    "that cargohold did not make; it is left untouched. Use another name, or "
                    "wipe it yourself if it is really unused"
                )
            uuid = filesystems.make(name, device, fs)
            (self._dir(name) / "filesystem").write_text(f"{fs} {uuid}\n")
        except BaseException:
            self.array.detach(name)
            raise
        self.array.release(name)  # the mount that usually follows may find it attached

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        if not self._dir(name).is_dir() and not self._exists(name):
            raise NotFound(f"no such volume: {name}")
        with self._held(name):
            self._unmount_locked(name)
            with contextlib.suppress(NotFound):
                self.array.delete(name)
            shutil.rmtree(self._dir(name), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.root / "volumes" / f".{name}.lock").unlink()

    # -- mount / unmount -------------------------------------------------------

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        if not self._data(name).is_dir():
            raise NotFound(f"no such volume: {name} (its directory {self._dir(name)} is gone)")
        with self._held(name):
            return self._mount_locked(name)

    def _mount_locked(self, name: str) -> Path:
        data = self._data(name)
        if mounts.is_mountpoint(data):
            return data  # mounted already: after a crash of the core, say
        flag = self._dir(name) / "mounted"
        unclean = flag.exists()
        path = self.array.attach(name)
        try:
            if self.block:
                fs = self._checked_filesystem(name, path, unclean)
                pending = self._dir(name) / "grow"
                if pending.exists() and fs == "ext4":
                    filesystems.grow_unmounted(name, path)
                flag.touch()
                mounts.mount(path, data, fs, 0, "nouuid" if fs == "xfs" else None)
                if pending.exists():
                    if fs == "xfs":
                        filesystems.grow(name, path, data, fs)
                    pending.unlink()
            else:
                flag.touch()
                mounts.bind(path, data, recursive=False)
            self.array.mounted(name)
        except BaseException as err:
            flag.unlink(missing_ok=True)
            with contextlib.suppress(CargoholdError, OSError):
                self.array.detach(name)
            if isinstance(err, OSError):
                raise CargoholdError(
                    f"volume {name}: mounting {path} on {data} failed: {err.strerror}"
                ) from None
            raise
        return data

    def _checked_filesystem(self, name: str, device: Path, unclean: bool) -> str:
        marker = self._marker(name)
        found = blockdev.identify(device)
        if marker is None or found is None or (found.type, found.uuid) != marker:
            raise Conflict(
                f"volume {name}: {device} does not hold the filesystem cargohold made on it "
                f"(expected {marker}, found {found}); it is not mounted. Restore the volume "
                "from a snapshot, or remove it"
            )
        if unclean or found.needs_recovery:
            filesystems.check(name, device, found.type)
        return found.type

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        with self._held(name):
            self._unmount_locked(name)

    def _unmount_locked(self, name: str) -> None:
        data = self._data(name)
        if mounts.is_mountpoint(data):
            try:
                mounts.make_private(data)
                mounts.umount(data)
            except OSError as err:
                if err.errno == errno.EBUSY:
                    raise InUse(
                        f"volume {name}: {data} is still in use by a process; stop it "
                        "(see: fuser -vm DIR) and unmount again"
                    ) from None
                raise CargoholdError(f"volume {name}: unmounting {data} failed: {err}") from None
        self.array.detach(name)
        (self._dir(name) / "mounted").unlink(missing_ok=True)

    def restore(self) -> None:
        """Mount again the volumes this driver had mounted, where the mount is gone."""
        for flag in (self.root / "volumes").glob("*/mounted"):
            name = flag.parent.name
            with self._held(name):
                if flag.exists() and not mounts.is_mountpoint(self._data(name)):
                    with contextlib.suppress(CargoholdError, OSError):
                        self._mount_locked(name)

    # -- report ----------------------------------------------------------------

    def get(self, name: str) -> DriverVolume:
        if not self._data(name).is_dir():
            raise NotFound(f"no such volume: {name}")
        status: dict[str, Any] = {"array": self.name}
        try:
            volume = self.array.get(name)
        except NotFound:
            status["error"] = f"the {self.name} array no longer holds this volume"
        else:
            status.update(_describe(volume))
            marker = self._marker(name)
            if marker:
                status["filesystem"], status["uuid"] = marker
            device = self.array.attached(name) if self.block else None
            if device is not None:
                status["device"] = str(device)
        return DriverVolume(name, self._data(name), status)

    def list(self) -> list[DriverVolume]:
        return [
            DriverVolume(entry.name, Path(entry.path) / "_data")
            for entry in os.scandir(self.root / "volumes")
            if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "_data"))
        ]

    def usage(self, name: str) -> int:
        return self.array.usage(name)

    # -- snapshots, clones, resize -------------------------------------------

    def snapshot(self, name: str, snapshot: str) -> None:
        check_name("snapshot", snapshot)
        self._snapshots_of(name, "snapshot")
        self._consistent(name, lambda: self.array.snapshot(name, snapshot))

    def snapshots(self, name: str) -> builtins.list[ArraySnapshot]:
        return self._snapshots_of(name, "snapshot")

    def remove_snapshot(self, name: str, snapshot: str) -> None:
        check_name("snapshot", snapshot)
        self._snapshots_of(name, "snapshot")
        self.array.delete_snapshot(name, snapshot)

    def _snapshots_of(self, name: str, what: str) -> builtins.list[ArraySnapshot]:
        if not self.array.capabilities.snapshot:
            raise NotSupported(f"the {self.name} array cannot take snapshots")
        try:
            return self.array.snapshots(name)
        except NotFound:
            raise NotFound(f"{what}: no such {self.name} volume: {name}") from None

    def clone(self, source: str, name: str) -> None:
        self.create(name, {"from": source})

    def _consistent(self, name: str, call: Callable[[], object]) -> None:
        """Run ``call`` with the volume's filesystem frozen if it is mounted."""
        data = self._data(name)
        if not (self.block and mounts.is_mountpoint(data)):
            call()
            return
        try:
            with blockdev.frozen(data):
                call()
        except OSError as err:
            raise CargoholdError(
                f"volume {name}: freezing {data} for a consistent copy failed: {err.strerror}; "
                + _SNAP_TIMEOUT_HINT
            ) from None

    def resize(self, name: str, size: int) -> None:
        volume = self.array.get(name)
        if volume.size is not None and size < volume.size:
            raise InvalidArgument(
                f"volume {name}: {size} bytes is smaller than its {volume.size}; volumes only grow"
            )
        self._check_size(name, size)
        with self._held(name):
            self.array.resize(name, size)
            if not self.block:
                return
            data = self._data(name)
            if not mounts.is_mountpoint(data):
                self._grow_offline(name)
                return
            pending = self._dir(name) / "grow"
            pending.touch()  # should the online grow fail, the next mount grows it
            device = self.array.attach(name)
            filesystems.grow(name, device, data, self._fs(name))
            pending.unlink()

    def _fs(self, name: str) -> str:
        marker = self._marker(name)
        return marker[0] if marker else "ext4"

    def _grow_offline(self, name: str) -> None:
        """Grow an unmounted volume's filesystem: ext4 as it is, xfs mounted for a moment."""
        if not self.block:
            return
        if self._fs(name) == "xfs":
            data = self._data(name)
            self._mount_locked(name)
            try:
                filesystems.grow(name, self.array.attach(name), data, "xfs")
            finally:
                self._unmount_locked(name)
            return
        device = self.array.attach(name)
        try:
            filesystems.grow_unmounted(name, device)
        finally:
            self.array.detach(name)

    def close(self) -> None:
        self.array.close()


def _thin(opts: Mapping[str, Any]) -> bool:
    return bool(opts.get("thin", True))


def _describe(volume: ArrayVolume) -> dict[str, Any]:
    status: dict[str, Any] = {"size": volume.size, "thin": volume.thin}
    if volume.source:
        status["source"] = volume.source
    status.update(volume.extra)
    return status
