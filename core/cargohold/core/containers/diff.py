"""A layer diff of two directory trees, as Docker's ``commit`` writes one.

Given the tree below (``lower``, the image) and the tree above (``upper``,
the container's root), `write_changes` writes a layer tar that, applied on
``lower``, gives ``upper``: new and changed entries as they are in ``upper``
(extended attributes included, such as file capabilities), and a
``.wh.<name>`` whiteout for each entry that ``upper`` lacks. Works on mounted
trees, so it serves every snapshotter alike.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import time
from collections.abc import Callable, Collection
from pathlib import Path


def write_changes(
    lower: Path,
    upper: Path,
    output: Path,
    placeholders: Collection[str] = (),
    exclude: Collection[str] = (),
) -> None:
    """Write what differs from ``lower`` to ``upper`` as a layer tar at ``output``.

    New and changed entries are added as they are in ``upper``; an entry of
    ``lower`` missing from ``upper`` becomes a ``.wh.<name>`` whiteout. A
    directory is descended only where both trees have one, so a replaced
    directory is written whole. ``placeholders`` (relative paths) are left out
    when they are new and empty: files made only to mount something on.
    ``exclude`` (relative paths) are never written, looked into or whited
    out: what is mounted there (a running container's volumes, /proc) is not
    the container's layer.
    """
    skip = frozenset(placeholders)
    excluded = frozenset(exclude)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.name in skip and info.isfile() and info.size == 0:
            return None
        return None if _under_any(info.name, excluded) else info

    def entry(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        kept = keep(info)
        if kept is not None:
            # as Docker's tars carry them: what apply_layer reads back
            headers = {
                _XATTR_PAX + name: value.decode("utf-8", "surrogateescape")
                for name, value in _xattrs(upper / kept.name).items()
            }
            if headers:
                kept.pax_headers = {**kept.pax_headers, **headers}
        return kept

    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        _diff_dir(tar, lower, upper, "", keep, entry)


_Keep = Callable[[tarfile.TarInfo], tarfile.TarInfo | None]
_XATTR_PAX = "SCHILY.xattr."
# overlay's own bookkeeping is never part of a layer
_SKIPPED_XATTRS = ("trusted.overlay.",)


def _xattrs(path: Path) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return {
            n: os.getxattr(path, n, follow_symlinks=False)
            for n in sorted(names)
            if not n.startswith(_SKIPPED_XATTRS)
        }
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise


def _under_any(path: str, tops: frozenset[str]) -> bool:
    return any(path == top or path.startswith(top + "/") for top in tops)


def _diff_dir(
    tar: tarfile.TarFile, lower: Path, upper: Path, rel: str, keep: _Keep, entry: _Keep
) -> None:
    upper_dir = upper / rel if rel else upper
    lower_dir = lower / rel if rel else lower
    upper_names = sorted(os.listdir(upper_dir))
    lower_names = set(os.listdir(lower_dir)) if lower_dir.is_dir() else set()
    for name in sorted(lower_names - set(upper_names)):
        if keep(tarfile.TarInfo(f"{rel}/{name}" if rel else name)) is None:
            continue
        whiteout = tarfile.TarInfo(f"{rel}/.wh.{name}" if rel else f".wh.{name}")
        whiteout.mtime = int(time.time())
        tar.addfile(whiteout)
    for name in upper_names:
        path = f"{rel}/{name}" if rel else name
        probe = tarfile.TarInfo(path)
        probe.type = tarfile.DIRTYPE  # placeholders are files: this asks about exclusion only
        if keep(probe) is None:
            continue
        new = os.lstat(upper / path)
        old = _lstat_or_none(lower / path) if name in lower_names else None
        both_dirs = old is not None and stat.S_ISDIR(old.st_mode) and stat.S_ISDIR(new.st_mode)
        if old is None or _changed(old, new, lower / path, upper / path):
            recursive = not both_dirs and old is None
            tar.add(upper / path, arcname=path, recursive=recursive, filter=entry)
            if old is not None and not both_dirs and stat.S_ISDIR(new.st_mode):
                _add_tree(tar, upper, path, entry)
        if both_dirs:
            _diff_dir(tar, lower, upper, path, keep, entry)


def _add_tree(tar: tarfile.TarFile, root: Path, rel: str, keep: _Keep) -> None:
    for name in sorted(os.listdir(root / rel)):
        tar.add(root / rel / name, arcname=f"{rel}/{name}", recursive=True, filter=keep)


def _lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _changed(old: os.stat_result, new: os.stat_result, old_path: Path, new_path: Path) -> bool:
    if stat.S_IFMT(old.st_mode) != stat.S_IFMT(new.st_mode):
        return True
    if (old.st_mode, old.st_uid, old.st_gid) != (new.st_mode, new.st_uid, new.st_gid):
        return True
    if _xattrs(old_path) != _xattrs(new_path):  # e.g. setcap: neither size nor mtime moves
        return True
    if stat.S_ISDIR(new.st_mode):
        return False  # entries below are compared one by one
    if stat.S_ISLNK(new.st_mode):
        return os.readlink(old_path) != os.readlink(new_path)
    if stat.S_ISCHR(new.st_mode) or stat.S_ISBLK(new.st_mode):
        return old.st_rdev != new.st_rdev
    return old.st_size != new.st_size or old.st_mtime_ns != new.st_mtime_ns
