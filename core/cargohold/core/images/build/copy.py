"""``COPY``/``ADD`` into a mounted root filesystem, docker's rules, never writing outside.

Destination paths are resolved inside the root as docker resolves them
(``FollowSymlinkInScope``): a symlink in the image is followed, but an
absolute target or ``..`` is taken from the image's root, never the host's.
New files and directories are owned by ``--chown`` (or 0:0); files keep
their mode and time; links stay links. ``ADD`` of a local tar archive (plain,
gzip, bzip2, xz) unpacks it into the destination.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path

from cargohold.core.images.build.context import Context, Source
from cargohold.core.images.build.parser import Instruction


def in_root(root: Path, path: str) -> Path:
    """``path`` (absolute in the image) as a host path under ``root``, links followed
    inside ``root``. The last component need not exist."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 255:
                raise OSError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _id_of(root: Path, name: str, database: str, inst: Instruction) -> int:
    if name.isdigit():
        return int(name)
    table = in_root(root, f"/etc/{database}")
    try:
        for line in table.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[0] == name:
                return int(fields[2])
    except (OSError, ValueError):
        pass
    kind = "user" if database == "passwd" else "group"
    raise inst.error(f"unable to find {kind} {name} in the image's /etc/{database}")


def owner(root: Path, chown: str | None, inst: Instruction) -> tuple[int, int]:
    """``--chown=user[:group]`` as numbers (a user alone: its number for both, as docker)."""
    if not chown:
        return 0, 0
    user, _, group = chown.partition(":")
    uid = _id_of(root, user, "passwd", inst)
    gid = _id_of(root, group, "group", inst) if group else uid
    return uid, gid


def _makedirs(path: Path, ids: tuple[int, int]) -> None:
    """Create missing directories (0755, owned by ``ids``), as MkdirAllAndChownNew."""
    missing = []
    while not path.exists() and not path.is_symlink():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(0o755)
        os.chown(directory, *ids)
        os.chmod(directory, 0o755)


def _replace(target: Path) -> None:
    """Make room for a new non-directory at ``target``."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()


def _copy_one(src: Path, target: Path, ids: tuple[int, int]) -> None:
    info = os.lstat(src)
    if stat.S_ISDIR(info.st_mode):
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        if not target.exists():
            target.mkdir()
        os.chown(target, *ids)
        os.chmod(target, stat.S_IMODE(info.st_mode))
        return
    if target.is_dir() and not target.is_symlink():
        raise IsADirectoryError(f"cannot overwrite directory {target} with a file")
    _replace(target)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(src), target)
        os.lchown(target, *ids)
        return
    if not stat.S_ISREG(info.st_mode):
        return  # sockets, fifos, devices of the context are not copied, as docker
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with open(src, "rb") as reader, open(os.open(target, flags, 0o600), "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        os.fchown(writer.fileno(), *ids)
        os.fchmod(writer.fileno(), stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def copy_into(
    root: Path,
    context: Context,
    sources: list[Source],
    dest: str,
    ids: tuple[int, int],
    inst: Instruction,
    *,
    wildcard: bool,
) -> None:
    """Copy ``sources`` to ``dest`` (absolute in the image) under ``root``."""
    is_add = inst.name == "ADD"
    if (len(sources) > 1 or wildcard) and not dest.endswith("/"):
        raise inst.error(
            f"when using {inst.name} with more than one source file, the destination must be "
            "a directory and end with a /"
        )
    for source in sources:
        real_dir = source.path.is_dir() and not source.path.is_symlink()
        if real_dir or (is_add and _is_archive(source.path)):
            target_dir = in_root(root, dest)
            _makedirs(target_dir, ids)
            if not real_dir:
                _extract(source.path, target_dir, inst)
                continue
            for rel in context.files_of(source):
                inner = posixpath.relpath(rel, source.rel) if source.rel else rel
                target = in_root(root, posixpath.join(dest, inner))
                _makedirs(target.parent, ids)
                _copy_one(context.root / rel, target, ids)
            continue
        name = posixpath.basename(source.rel)
        target = in_root(root, dest)
        if dest.endswith("/") or (target.is_dir() and not target.is_symlink()):
            target = in_root(root, posixpath.join(dest, name))
        _makedirs(target.parent, ids)
        _copy_one(source.path, target, ids)


def _is_archive(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _extract(path: Path, target: Path, inst: Instruction) -> None:
    try:
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="tar")
    except (tarfile.TarError, OSError) as err:
        raise inst.error(f"cannot unpack {path.name}: {err}") from None
