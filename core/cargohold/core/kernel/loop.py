"""Loop devices through the kernel's ioctls, without running losetup(8).

`attach` takes a free device from ``/dev/loop-control`` (``LOOP_CTL_GET_FREE``) and
binds a file to it in one call (``LOOP_CONFIGURE``, Linux 5.8+), direct I/O off.
With ``autoclear`` the kernel detaches the device by itself when its last user
goes (the last close or unmount), so a crash never leaks one once the device is
mounted. `find` answers which device backs a file (``/sys/block/loop*/loop/
backing_file``, then confirmed by device and inode number), which is how a
restarted process finds the devices it attached before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

LOOP_CONTROL = "/dev/loop-control"
LOOP_CLR_FD = 0x4C01
LOOP_GET_STATUS64 = 0x4C05
LOOP_SET_CAPACITY = 0x4C07
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4

# struct loop_info64: device, inode, rdevice, offset, sizelimit (u64); number,
# encrypt type, key size, flags (u32); file name, crypt name (64 bytes each),
# key (32), init (2 x u64): 232 bytes.
_INFO64 = struct.Struct("=QQQQQIIII64s64s32s16x")
# struct loop_config: fd, block size (u32), loop_info64, 8 reserved u64.
_CONFIG = struct.Struct(f"=II{_INFO64.size}s64x")
_SYS_BLOCK = Path("/sys/block")
_ATTEMPTS = 32  # another process may take the free device before we bind it


@dataclass(frozen=True)
class LoopDevice:
    """An attached loop device: its node, and the file behind it."""

    path: Path
    backing_file: Path
    read_only: bool
    autoclear: bool

    @property
    def number(self) -> int:
        return int(self.path.name.removeprefix("loop"))


def attach(image: Path | str, *, read_only: bool = False, autoclear: bool = True) -> LoopDevice:
    """Bind ``image`` to a free loop device and return it.

    With ``autoclear`` the caller should use the device (mount it, or keep a
    descriptor open) before it closes its last descriptor: the kernel detaches
    an autoclear device the moment nobody holds it. `attach_held` keeps one open.
    """
    device, fd = attach_held(image, read_only=read_only, autoclear=autoclear)
    os.close(fd)
    return device


def attach_held(
    image: Path | str, *, read_only: bool = False, autoclear: bool = True
) -> tuple[LoopDevice, int]:
    """`attach`, returning also an open descriptor of the device, which keeps an
    autoclear device attached until it is closed."""
    image = Path(os.path.realpath(image))
    flags = (LO_FLAGS_READ_ONLY if read_only else 0) | (LO_FLAGS_AUTOCLEAR if autoclear else 0)
    backing = os.open(image, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    try:
        control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(_ATTEMPTS):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                node = Path(f"/dev/loop{number}")
                fd = _open_node(node, read_only)
                info = _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, _name64(image), b"", b"")
                try:
                    fcntl.ioctl(fd, LOOP_CONFIGURE, bytearray(_CONFIG.pack(backing, 0, info)))
                except OSError as err:
                    os.close(fd)
                    if err.errno == errno.EBUSY:  # taken between GET_FREE and CONFIGURE
                        continue
                    what = f"LOOP_CONFIGURE of {node} for {image}: {err.strerror}"
                    raise OSError(err.errno, what) from None
                return LoopDevice(node, image, read_only, autoclear), fd
        finally:
            os.close(control)
    finally:
        os.close(backing)  # the device holds its own reference to the file
    raise OSError(errno.EBUSY, f"no free loop device for {image} after {_ATTEMPTS} attempts")


def _open_node(node: Path, read_only: bool) -> int:
    # udev may not have made the node of a freshly added device yet; make it ourselves
    if not node.exists():
        number = int(node.name.removeprefix("loop"))
        with contextlib.suppress(FileExistsError):
            os.mknod(node, 0o660 | 0o060000, os.makedev(7, number))
    return os.open(node, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)


def _name64(path: Path) -> bytes:
    # lo_file_name holds 63 bytes; longer paths are cut, as losetup does (sysfs has the whole)
    return os.fsencode(path)[:63]


def find(image: Path | str) -> LoopDevice | None:
    """The loop device backed by ``image`` now, or None (the first one, if several)."""
    found = find_all(image)
    return found[0] if found else None


def find_all(image: Path | str) -> list[LoopDevice]:
    """Every loop device backed by ``image``, lowest number first."""
    real = os.path.realpath(image)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return []
    found: list[LoopDevice] = []
    for entry in _loop_entries():
        try:
            backing = (entry / "loop" / "backing_file").read_text().rstrip("\n")
        except OSError:  # not bound, or detached while we look
            continue
        if backing.removesuffix(" (deleted)") != real:
            continue
        device = _status(Path("/dev") / entry.name)
        if device is not None and device[0] == (st.st_dev, st.st_ino):
            found.append(LoopDevice(Path("/dev") / entry.name, Path(real), *device[1:]))
    return sorted(found, key=lambda d: d.number)


def _loop_entries() -> list[Path]:
    try:
        return [e for e in _SYS_BLOCK.iterdir() if e.name.startswith("loop")]
    except FileNotFoundError:
        return []


def _status(node: Path) -> tuple[tuple[int, int], bool, bool] | None:
    """((st_dev, st_ino) of the backing file, read only, autoclear), or None if unbound."""
    try:
        fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = bytearray(_INFO64.size)
        fcntl.ioctl(fd, LOOP_GET_STATUS64, buf)
    except OSError:  # ENXIO: nothing bound
        return None
    finally:
        os.close(fd)
    device, inode, *_, flags = _INFO64.unpack(buf)[:9]
    return (
        (_decode_dev(device), inode),
        bool(flags & LO_FLAGS_READ_ONLY),
        bool(flags & LO_FLAGS_AUTOCLEAR),
    )


def _decode_dev(encoded: int) -> int:
    # lo_device is the kernel's huge_encode_dev(); st_dev uses glibc's encoding
    major = (encoded & 0xFFF00) >> 8
    minor = (encoded & 0xFF) | ((encoded >> 12) & 0xFFF00)
    return os.makedev(major, minor)


def detach(device: LoopDevice | Path | str, image: Path | str | None = None) -> None:
    """Unbind a loop device; one already free is no error.

    With ``image`` the device is unbound only if that file still backs it: an
    autoclear device may have gone and been taken by someone else meanwhile.
    A device still in use (mounted) is marked to detach when its last user goes.
    """
    node = device.path if isinstance(device, LoopDevice) else Path(device)
    try:
        fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if image is not None:
            status = _status(node)
            st = os.stat(os.path.realpath(image))
            if status is None or status[0] != (st.st_dev, st.st_ino):
                return
        try:
            fcntl.ioctl(fd, LOOP_CLR_FD)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: nothing bound
                raise OSError(err.errno, f"LOOP_CLR_FD of {node}: {err.strerror}") from None
    finally:
        os.close(fd)


def set_capacity(device: LoopDevice | Path | str) -> None:
    """Make the device see its backing file's new size (after the file grew)."""
    node = device.path if isinstance(device, LoopDevice) else Path(device)
    fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_SET_CAPACITY, 0)
    finally:
        os.close(fd)


def size_of(device: LoopDevice | Path | str) -> int:
    """The device's size in bytes, as the kernel sees it now."""
    node = device.path if isinstance(device, LoopDevice) else Path(device)
    sectors = (_SYS_BLOCK / node.name / "size").read_text()
    return int(sectors) * 512
