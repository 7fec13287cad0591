"""Applying image layers (tar diffs) to a directory, as Docker does, but safely.

A layer is a tar of what changed. Deletions are whiteouts: ``dir/.wh.name``
deletes ``dir/name`` from the layers below; ``dir/.wh..wh..opq`` hides
everything below in ``dir`` (entries of the same layer stay). Two ways to
apply them (`cargohold.core.api.snapshots.WhiteoutStyle`):

``merged``
    the target holds the full tree of the layers below; whiteouts delete.
``overlay``
    the target is an empty overlay upper directory; whiteouts are written in
    overlay's own form (a 0/0 character device; ``trusted.overlay.opaque=y``)
    so the layer stacks directly under overlayfs.

Safety: entry names and hard-link targets that leave the root (``../``)
are refused, as are symlinks whose relative target climbs out of the root
(as Docker refuses them), and nothing is ever written through a symlink in
the tree: an entry whose parent path crosses a symlink is refused, so an
absolute symlink cannot be used to write outside. Ownership, modes, times
and extended attributes are kept where the host allows (owners and device
nodes need root); overlay's own ``trusted.overlay.*`` attributes are never
taken from a tar.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

from cargohold.core.api.errors import InvalidArgument
from cargohold.core.kernel.snapshot_mounts import mounted
from cargohold.core.snapshots.service import Snapshotter

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
Style = Literal["overlay", "merged"]

_IS_ROOT = os.geteuid() == 0
_XATTR_PAX = "SCHILY.xattr."
_SKIPPED_XATTRS = ("trusted.overlay.",)
_NOT_SUPPORTED = (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL)


class LayerError(InvalidArgument):
    """A layer tar is malformed or unsafe; nothing more of it is applied."""


def clean_name(name: str, what: str = "entry") -> str:
    """A tar name as a relative path inside the root ("" is the root); refuse escapes."""
    stripped = name.lstrip("/")
    normal = posixpath.normpath(stripped) if stripped else "."
    if normal == ".." or normal.startswith("../"):
        raise LayerError(f"layer {what} {name!r} points outside the root filesystem")
    return "" if normal == "." else normal


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def check_symlink(rel: str, member: tarfile.TarInfo) -> None:
    """Refuse a relative symlink that climbs out of the root (as Docker does)."""
    target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), member.linkname))
    if not member.linkname.startswith("/") and (target == ".." or target.startswith("../")):
        raise LayerError(
            f"layer symlink {member.name!r} -> {member.linkname!r} points outside the root"
        )


def check_layer(path: Path) -> None:
    """Refuse a layer tar at ``path`` whose entries would escape the root.

    Checks what can be known from the tar alone (names, link targets, entries
    written through a symlink of the same layer); `apply_layer` checks the
    rest against the tree below. Raises `LayerError`.
    """
    symlinks: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                rel = clean_name(member.name)
                parts = rel.split("/")
                for depth in range(1, len(parts)):
                    if "/".join(parts[:depth]) in symlinks:
                        raise LayerError(
                            f"layer entry {member.name!r} would be written through a symlink; "
                            "refusing (it could lead outside the root)"
                        )
                if member.issym():
                    check_symlink(rel, member)
                    symlinks.add(rel)
                else:
                    symlinks.discard(rel)
                if member.islnk():
                    clean_name(member.linkname, "hard link target")
    except (tarfile.TarError, EOFError) as err:
        raise LayerError(f"layer is not a valid tar (corrupt or truncated?): {err}") from None


class _Applier:
    def __init__(self, root: Path, style: Style, lowers: Sequence[Path] = ()) -> None:
        self.root = root
        self.lowers = [os.fspath(p) for p in lowers]
        # how many lowers are visible under a checked directory (opaque ones cut it)
        self.visible: dict[str, int] = {"": len(self.lowers)}
        self.root_fd = os.fspath(root)
        self.style = style
        # relative paths of directories known to be real directories (no symlink)
        self.safe_dirs: set[str] = {""}
        # paths this layer wrote: an opaque marker keeps them
        self.written: set[str] = set()
        self.dir_meta: list[tuple[str, tarfile.TarInfo]] = []

    def path(self, rel: str) -> str:
        return os.path.join(self.root_fd, rel) if rel else self.root_fd

    def ensure_parent(self, rel: str, entry: str) -> None:
        """Make ``rel``'s parent directories exist, refusing any that is a symlink."""
        parent = posixpath.dirname(rel)
        if parent in self.safe_dirs:
            return
        walked = ""
        for part in parent.split("/"):
            above = walked
            walked = f"{walked}/{part}" if walked else part
            if walked in self.safe_dirs:
                continue
            full = self.path(walked)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                self.make_parent(walked, above, entry)
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise LayerError(
                        f"layer entry {entry!r} would be written through the symlink "
                        f"/{walked}; refusing (it could lead outside the root)"
                    )
                if not stat.S_ISDIR(st.st_mode):
                    raise LayerError(f"layer entry {entry!r}: /{walked} is not a directory")
            self.safe_dirs.add(walked)

    def make_parent(self, rel: str, above: str, entry: str) -> None:
        """Create missing directory ``rel``; in an overlay upper dir, like the lower one."""
        limit = self.visible.get(above, len(self.lowers))
        self.visible[rel] = 0
        for index, lower in enumerate(self.lowers[:limit]):
            try:
                st = os.lstat(os.path.join(lower, rel))
            except FileNotFoundError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                break  # deleted in that layer
            if stat.S_ISLNK(st.st_mode):
                raise LayerError(
                    f"layer entry {entry!r} would be written through the symlink /{rel} of "
                    "a lower layer; refusing (it could lead outside the root)"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"layer entry {entry!r}: /{rel} is not a directory")
            full = self.path(rel)
            os.mkdir(full, 0o700)
            os.chown(full, st.st_uid, st.st_gid)
            os.chmod(full, stat.S_IMODE(st.st_mode))
            os.utime(full, ns=(st.st_atime_ns, st.st_mtime_ns))
            opaque = _xattr(os.path.join(lower, rel), OVERLAY_OPAQUE_XATTR) == b"y"
            self.visible[rel] = index + 1 if opaque else limit
            return
        os.mkdir(self.path(rel), 0o755)

    def forget(self, rel: str) -> None:
        # Replacing a checked directory invalidates everything cached under it.
        if rel in self.safe_dirs:
            self.safe_dirs = {""}

    def remove(self, rel: str) -> None:
        full = self.path(rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        self.forget(rel)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(full)
        else:
            os.unlink(full)

    # -- whiteouts -----------------------------------------------------------

    def whiteout(self, rel: str, entry: str) -> None:
        parent, base = posixpath.split(rel)
        if base == OPAQUE:
            self.ensure_parent(rel, entry)
            if parent and not os.path.isdir(self.path(parent)):
                os.mkdir(self.path(parent), 0o755)
            if self.style == "overlay":
                os.setxattr(self.path(parent), OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            else:
                for child in os.listdir(self.path(parent)):
                    child_rel = posixpath.join(parent, child)
                    if child_rel not in self.written:
                        self.remove(child_rel)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk and the like): Docker skips it too
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise LayerError(f"layer whiteout {entry!r} names no file")
        target = posixpath.join(parent, name)
        self.ensure_parent(target, entry)
        self.remove(target)
        if self.style == "overlay":
            os.mknod(self.path(target), stat.S_IFCHR | 0o000, os.makedev(0, 0))

    # -- entries -------------------------------------------------------------

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = clean_name(member.name)
        if not rel:
            return  # the root itself: its metadata belongs to the snapshot
        if posixpath.basename(rel).startswith(WHITEOUT_PREFIX):
            self.whiteout(rel, member.name)
            return
        self.ensure_parent(rel, member.name)
        full = self.path(rel)
        self.written.add(rel)
        if member.isdir():
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                os.mkdir(full, 0o700)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    self.remove(rel)
                    os.mkdir(full, 0o700)
            self.safe_dirs.add(rel)
            self.dir_meta.append((rel, member))
            return
        self.remove(rel)
        if member.isreg():
            self.write_file(tar, member, full)
        elif member.issym():
            check_symlink(rel, member)
            os.symlink(member.linkname, full)
        elif member.islnk():
            source_rel = clean_name(member.linkname, "hard link target")
            self.ensure_parent(source_rel, member.name)
            source = self.path(source_rel)
            if not os.path.lexists(source):
                raise LayerError(
                    f"layer hard link {member.name!r} -> {member.linkname!r}: target not found"
                )
            os.link(source, full, follow_symlinks=False)
            return  # a hard link shares the target's metadata
        elif member.ischr() or member.isblk():
            if not _IS_ROOT:
                log.info("skipping device node %s: creating devices needs root", member.name)
                return
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(full, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(full, 0o600)
        else:
            raise LayerError(f"layer entry {member.name!r} has unsupported type {member.type!r}")
        self.set_meta(full, member)

    def write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, full: str) -> None:
        fd = os.open(
            full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, 1 << 20)

    def set_meta(self, full: str, member: tarfile.TarInfo) -> None:
        link = member.issym()
        if _IS_ROOT:
            os.chown(full, member.uid, member.gid, follow_symlinks=False)
        for key, value in member.pax_headers.items():
            if key.startswith(_XATTR_PAX):
                self.set_xattr(full, key[len(_XATTR_PAX) :], value)
        if not link:
            # after chown, which clears set-uid bits
            os.chmod(full, stat.S_IMODE(member.mode))
        mtime = member.mtime
        os.utime(full, (mtime, mtime), follow_symlinks=False)

    def set_xattr(self, full: str, name: str, value: str) -> None:
        if name.startswith(_SKIPPED_XATTRS):
            return
        try:
            os.setxattr(full, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError as err:
            if err.errno not in _NOT_SUPPORTED:
                raise
            log.debug("extended attribute %s not kept on %s: %s", name, full, err)

    def finish(self) -> None:
        # Directory metadata last, deepest first: writing children changes mtimes.
        for rel, member in reversed(self.dir_meta):
            self.set_meta(self.path(rel), member)


def apply_layer(stream: IO[bytes], root: Path, style: Style, lowers: Sequence[Path] = ()) -> None:
    """Apply the layer tar read from ``stream`` (plain or compressed) onto ``root``.

    For the overlay style, ``lowers`` are the layers below, nearest first.
    Raises `LayerError` for an unsafe or malformed tar. The caller owns
    cleaning up ``root`` after a failure (it is a fresh snapshot).
    """
    applier = _Applier(root, style, lowers)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                applier.entry(tar, member)
        applier.finish()
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise LayerError(f"layer is not a valid tar (corrupt or truncated?): {err}") from None


def apply_to_snapshot(snapshotter: Snapshotter, key: str, stream: IO[bytes], scratch: Path) -> None:
    """Apply a layer tar onto active snapshot ``key``: directly if the driver allows, else
    through its mounts on a temporary directory under ``scratch``."""
    direct = snapshotter.apply_target(key)
    if direct is not None:
        apply_layer(stream, direct.path, direct.style, direct.lowers)
        return
    with tempfile.TemporaryDirectory(dir=scratch) as where, mounted(snapshotter.mounts(key), where):
        apply_layer(stream, Path(where), "merged")
