"""Making, checking and growing the filesystem of a block volume with the standard tools.

Every tool runs with a timeout and its output goes into the error, which names
the volume and what to do. Nothing here decides whether a device may be
formatted: the driver does (see `cargohold.drivers.arrays.block`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cargohold.core import CargoholdError, InvalidArgument, NotSupported, Unavailable
from cargohold.core.kernel import blockdev

FILESYSTEMS = ("ext4", "xfs")
MKFS_TIMEOUT = 300.0  # a thick multi-TiB xfs on a slow array takes a while
FSCK_TIMEOUT = 1800.0
GROW_TIMEOUT = 300.0

MKFS = {
    # lazy init: the kernel zeroes inode tables in the background, so a large
    # volume is ready at once; -E nodiscard: a fresh thin volume is already empty
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1"],
    # reflink on: xfs clones files inside the volume in constant time
    "xfs": ["mkfs.xfs", "-q", "-f", "-K", "-m", "reflink=1"],
}
_PACKAGES = {"ext4": "e2fsprogs", "xfs": "xfsprogs"}


def tool_missing(fs: str) -> str | None:
    """Why volumes of ``fs`` cannot be made here, or None."""
    if fs not in MKFS:
        return f"filesystem {fs!r} is not one of {', '.join(FILESYSTEMS)}"
    if shutil.which(MKFS[fs][0]) is None:
        return f"{MKFS[fs][0]} is missing: apt-get install {_PACKAGES[fs]}"
    return None


def _run(
    volume: str, what: str, argv: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        fs = next((f for f, cmd in MKFS.items() if cmd[0] == argv[0]), "")
        hint = f": apt-get install {_PACKAGES[fs]}" if fs else ""
        raise NotSupported(
            f"volume {volume}: {what} needs {argv[0]}, which is missing{hint}"
        ) from None
    except subprocess.TimeoutExpired:
        raise Unavailable(
            f"volume {volume}: {what} ({' '.join(argv)}) did not finish in {timeout:.0f} s; "
            "the device may be hung: check dmesg, then try again"
        ) from None


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip() or result.stdout.strip()).replace("\n", "; ")[:600]


def make(volume: str, device: Path, fs: str) -> str:
    """Put a new ``fs`` filesystem on ``device``; return its UUID."""
    reason = tool_missing(fs)
    if reason:
        raise InvalidArgument(f"volume {volume}: {reason}")
    result = _run(volume, f"making {fs}", [*MKFS[fs], str(device)], MKFS_TIMEOUT)
    if result.returncode != 0:
        raise CargoholdError(
            f"volume {volume}: mkfs.{fs} on {device} failed: {_output(result)}. "
            "Remove the volume and create it again"
        )
    found = blockdev.identify(device)
    if found is None or found.type != fs:
        raise CargoholdError(f"volume {volume}: mkfs.{fs} ran but {device} holds no {fs} after it")
    return found.uuid


def check(volume: str, device: Path, fs: str) -> None:
    """Repair what an unclean stop left; xfs replays its log when mounted instead.

    e2fsck's exit codes 0-2 mean clean or fixed; anything else needs a person.
    """
    if fs != "ext4":
        return
    result = _run(volume, "checking ext4", ["e2fsck", "-p", str(device)], FSCK_TIMEOUT)
    if result.returncode > 2:
        raise CargoholdError(
            f"volume {volume}: e2fsck -p on {device} found errors it cannot fix alone "
            f"(exit {result.returncode}): {_output(result)}. Run e2fsck -f {device} by hand, "
            "or restore the volume from a snapshot"
        )


def grow(volume: str, device: Path, mountpoint: Path, fs: str) -> None:
    """Grow the mounted filesystem to fill its (already grown) device, online.

    Online ext4 growth needs CAP_SYS_RESOURCE; `grow_unmounted` needs none.
    """
    argv = ["resize2fs", str(device)] if fs == "ext4" else ["xfs_growfs", str(mountpoint)]
    result = _run(volume, f"growing {fs}", argv, GROW_TIMEOUT)
    if result.returncode != 0:
        raise CargoholdError(
            f"volume {volume}: {argv[0]} failed: {_output(result)}. The device has grown; "
            "the filesystem grows the next time the volume is mounted"
        )


def grow_unmounted(volume: str, device: Path) -> None:
    """Grow an unmounted ext4 to fill its device (resize2fs wants a forced check first)."""
    checked = _run(volume, "checking ext4", ["e2fsck", "-f", "-p", str(device)], FSCK_TIMEOUT)
    if checked.returncode > 2:
        raise CargoholdError(
            f"volume {volume}: e2fsck -f -p on {device} found errors it cannot fix alone "
            f"(exit {checked.returncode}): {_output(checked)}. Run e2fsck -f {device} by hand"
        )
    result = _run(volume, "growing ext4", ["resize2fs", str(device)], GROW_TIMEOUT)
    if result.returncode != 0:
        raise CargoholdError(
            f"volume {volume}: resize2fs {device} failed: {_output(result)}; run it by hand"
        )
