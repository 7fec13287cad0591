"""The ``copy`` snapshotter: a full copy of the parent per snapshot.

Works on any filesystem and without overlayfs. Copies are reflinked (shared
blocks, copy-on-write) where the filesystem can (btrfs, xfs), through
``cp --reflink=auto`` or, without cp, the ``FICLONE`` ioctl file by file.
A view of a committed snapshot is a read-only bind mount of it: no copy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cargohold.core.api.errors import CargoholdError
from cargohold.core.api.snapshots import Kind
from cargohold.drivers.snapshotters.common import FullTreeSnapshotter

FICLONE = 0x40049409


class CopySnapshotter(FullTreeSnapshotter):
    name = "copy"

    @classmethod
    def unsupported_reason(cls, root: Path) -> str | None:
        if os.geteuid() != 0:
            return "bind mounts need root"
        return None

    def create(self, sid: str, parents: Sequence[str], kind: Kind) -> None:
        (self.root / sid).mkdir(mode=0o711)
        if kind is Kind.ACTIVE and parents:
            copy_tree(self._fs(parents[0]), self._fs(sid))
        else:
            self._fs(sid).mkdir(mode=0o755)


def copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to the new directory ``target``: owners, modes, times, links, xattrs."""
    cp = shutil.which("cp")
    if cp is None:
        _copy_tree_python(source, target)
        return
    result = subprocess.run(
        [cp, "-a", "--reflink=auto", "--no-target-directory", str(source), str(target)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise CargoholdError(f"copying layer {source} failed: {result.stderr.strip()}")


def _copy_tree_python(source: Path, target: Path) -> None:
    """The same without cp: FICLONE where possible; hard links kept."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []

    def meta(path: str, st: os.stat_result) -> None:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        source = src_of[path]
        for name in os.listxattr(source, follow_symlinks=False):
            value = os.getxattr(source, name, follow_symlinks=False)
            try:
                os.setxattr(path, name, value, follow_symlinks=False)
            except OSError as err:  # as cp -a: an attribute the target cannot hold is dropped
                if err.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    src_of: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        out_dir = os.path.normpath(os.path.join(target, rel))
        st = os.lstat(dirpath)
        os.mkdir(out_dir, 0o700)
        src_of[out_dir] = dirpath
        dirs.append((out_dir, st))
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            src = os.path.join(dirpath, name)
            dst = os.path.join(out_dir, name)
            st = os.lstat(src)
            src_of[dst] = src
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], dst)
                continue
            links[key] = dst
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                _clone_file(src, dst)
            else:
                os.mknod(dst, st.st_mode, st.st_rdev)
            meta(dst, st)
    for out_dir, st in reversed(dirs):
        meta(out_dir, st)


def _clone_file(src: str, dst: str) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            return
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY):
                raise
        shutil.copyfileobj(fin, fout, 1 << 20)
