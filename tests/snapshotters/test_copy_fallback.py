"""The copy snapshotter's copy without cp gives what ``cp -a`` gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cargohold.drivers.snapshotters.copy import _copy_tree_python, copy_tree

pytestmark = pytest.mark.root


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    seen: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            data = Path(full).read_bytes() if stat.S_ISREG(st.st_mode) else b""
            xattrs = {} if link else {k: os.getxattr(full, k) for k in os.listxattr(full)}
            first = inodes.setdefault(st.st_ino, rel)  # hard links: same first name
            seen[rel] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
                link,
                data,
                xattrs,
                first,
            )
    return seen


def test_python_copy_matches_cp(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dir/sub").mkdir(parents=True)
    (src / "dir/file").write_bytes(b"content")
    os.chown(src / "dir/file", 1234, 5678)
    os.chmod(src / "dir/file", 0o4750)
    os.setxattr(src / "dir/file", "user.note", b"kept")
    os.link(src / "dir/file", src / "dir/hard")
    (src / "link").symlink_to("dir/file")
    (src / "dirlink").symlink_to("dir")
    os.mkfifo(src / "fifo")
    os.chmod(src / "dir/sub", 0o700)
    copy_tree(src, tmp_path / "by-cp")
    _copy_tree_python(src, tmp_path / "by-python")
    assert describe(tmp_path / "by-python") == describe(tmp_path / "by-cp") == describe(src)
