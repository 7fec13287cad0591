"""The machine's floors: the bare system calls a storage operation cannot beat.

Plain ``mount(2)`` and ``umount2(2)`` through the project's one libc binding,
with no parsing or bookkeeping, so a floor is what the kernel costs and nothing
else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from cargohold.core.kernel.libc import check, libc

MS_BIND = 0x1000
MNT_DETACH = 2


def mount(source: str, target: Path, fstype: str | None, flags: int, data: str = "") -> None:
    result = libc.mount(
        source.encode(),
        str(target).encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    check(result, f"mount {fstype or 'bind'}", target)


def umount(target: Path, *, detach: bool = False) -> None:
    check(libc.umount2(str(target).encode(), MNT_DETACH if detach else 0), "umount", target)


def bind(source: Path, target: Path) -> None:
    mount(str(source), target, None, MS_BIND)


def overlay(lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    """One overlay mount(2) with absolute paths (callers keep the list short enough)."""
    layers = ":".join(str(p) for p in lower)
    mount("overlay", target, "overlay", 0, f"lowerdir={layers},upperdir={upper},workdir={work}")


def mounted_under(top: Path) -> list[Path]:
    """Mount points at or below ``top``, deepest last (unmount in reverse)."""
    prefix = str(top)
    found: list[Path] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return found


def unmount_everything_under(top: Path) -> None:
    """Lazy-unmount whatever a failed run left mounted under ``top``."""
    for point in reversed(mounted_under(top)):
        with contextlib.suppress(OSError):
            umount(point, detach=True)


@contextlib.contextmanager
def tmpfs(where: Path, size_mb: int) -> Iterator[Path]:
    """A private tmpfs (the memory ceiling of the data path); /dev/shm without root."""
    if os.geteuid() != 0:
        scratch = Path(os.environ.get("CARGOHOLD_BENCH_SHM", "/dev/shm")) / f"chbench-{os.getpid()}"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    where.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", where, "tmpfs", 0, f"size={size_mb}m,mode=0700")
    try:
        yield where
    finally:
        umount(where, detach=True)
        with contextlib.suppress(OSError):
            where.rmdir()


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (for the report)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def mounts_of_same_filesystem(path: Path) -> list[Path]:
    """Mount points of the filesystem holding ``path`` (same device in mountinfo)."""
    entries = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        entries.append((fields[2], Path(fields[4].replace("\\040", " "))))
    resolved = path.resolve()
    holding = [(dev, p) for dev, p in entries if resolved == p or p in resolved.parents]
    if not holding:
        return []
    device = max(holding, key=lambda e: len(str(e[1])))[0]
    return [p for dev, p in entries if dev == device]
