"""The snapshotter conformance suite, for authors of snapshot drivers.

Subclass `SnapshotterConformance` in a test module and pytest runs every
check on your driver::

    from cargohold.core.testing.snapshotters import SnapshotterConformance

    class TestMySnapshotter(SnapshotterConformance):
        driver_class = MySnapshotDriver

The driver keeps its data under the ``snapshot_root`` fixture (a temporary
directory; override it to put the data on a particular filesystem). Each
check goes through the core's `Snapshotter` (metadata plus your driver) and
looks at the result through real mounts, so it needs root. Mounts a test
leaves behind are detached afterwards.

Also here: `layer`, a small builder of layer tars (files, links, whiteouts)
for tests of anything that unpacks images.

This module needs pytest: ``pip install 'cargohold[testing]'``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

try:
    import pytest
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cargohold.core.testing.snapshotters needs pytest: pip install 'cargohold[testing]'"
    ) from err

from cargohold.core.api.errors import Conflict, InUse, InvalidArgument, NotFound
from cargohold.core.api.snapshots import Kind, SnapshotContext, SnapshotDriver
from cargohold.core.images.layers import apply_to_snapshot
from cargohold.core.kernel import mounts as kmounts
from cargohold.core.kernel.snapshot_mounts import mounted, unmount_all
from cargohold.core.snapshots.service import Snapshotter
from cargohold.core.state.snapshot_store import SnapshotMetadata

__all__ = ["SnapshotterConformance", "layer", "remove_all", "tree"]


# -- building layer tars -------------------------------------------------------


def layer(*entries: tuple[Any, ...]) -> bytes:
    """A layer tar from entries, in order. Each entry is a tuple:

    ``("file", name, data[, mode[, uid, gid]])``, ``("dir", name[, mode])``,
    ``("symlink", name, target)``, ``("hardlink", name, target)``,
    ``("whiteout", name)`` (deletes ``name``), ``("opaque", dir)``,
    ``("fifo", name)``, ``("chardev", name, major, minor)``,
    ``("xattr", name, data, {key: value})`` (a file with extended attributes).
    """
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            kind, name = entry[0], entry[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            data = b""
            if kind in ("file", "xattr"):
                data = entry[2]
                info.mode = entry[3] if len(entry) > 3 and kind == "file" else 0o644
                if kind == "file" and len(entry) > 5:
                    info.uid, info.gid = entry[4], entry[5]
                if kind == "xattr":
                    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in entry[3].items()}
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = entry[2] if len(entry) > 2 else 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry[2]
                info.mode = 0o777
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, entry[2]
            elif kind == "whiteout":
                head, _, base = name.rpartition("/")
                info.name = f"{head}/.wh.{base}" if head else f".wh.{base}"
            elif kind == "opaque":
                info.name = f"{name.rstrip('/')}/.wh..wh..opq"
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                info.mode = 0o644
            elif kind == "chardev":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = entry[2], entry[3]
                info.mode = 0o666
            else:
                raise ValueError(f"unknown layer entry kind {kind!r}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def tree(root: Path) -> dict[str, str]:
    """What a user sees under ``root``: path -> ``"file:<data>"``, ``"dir"``,
    ``"link:<target>"`` or ``"other:<type>"``."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = f"link:{os.readlink(full)}"
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                seen[rel] = "file:" + Path(full).read_bytes().decode(errors="replace")
            else:
                seen[rel] = f"other:{stat.S_IFMT(st.st_mode):o}"
    return seen


# -- the suite -----------------------------------------------------------------


@pytest.mark.root
class SnapshotterConformance:
    """Checks every snapshot driver must pass. Set ``driver_class``."""

    driver_class: ClassVar[type[SnapshotDriver]]
    #: Chain depth of the deep-image check (past one page of overlay options).
    deep_layers: ClassVar[int] = 130
    #: False for drivers whose snapshots hold a full copy (their usage includes the parent's).
    usage_excludes_parents: ClassVar[bool] = True

    @pytest.fixture
    def snapshot_root(self, tmp_path: Path) -> Path:
        """Where the driver keeps data; override to choose the filesystem."""
        return tmp_path / "snapshots"

    @pytest.fixture
    def snapshotter(self, snapshot_root: Path, tmp_path: Path) -> Iterator[Snapshotter]:
        if os.geteuid() != 0:
            pytest.skip("snapshotters mount: needs root")
        root = snapshot_root / self.driver_class.name
        reason = self.driver_class.unsupported_reason(root)
        if reason:
            pytest.skip(f"{self.driver_class.name} cannot run here: {reason}")
        root.mkdir(parents=True, exist_ok=True)
        meta = SnapshotMetadata(tmp_path / "snapshots.db")
        snap = Snapshotter(self.driver_class(SnapshotContext(root)), meta)
        try:
            yield snap
        finally:
            _detach_under(tmp_path)
            _detach_under(snapshot_root)
            remove_all(snap)
            meta.close()

    @pytest.fixture
    def target(self, tmp_path: Path) -> Iterator[Path]:
        """An empty directory to mount snapshots on."""
        path = tmp_path / "mnt"
        path.mkdir()
        try:
            yield path
        finally:
            unmount_all(path)

    # helpers

    def commit_layer(
        self, snap: Snapshotter, name: str, parent: str | None, tar: bytes, scratch: Path
    ) -> None:
        key = f"{name}-active"
        snap.prepare(key, parent)
        apply_to_snapshot(snap, key, io.BytesIO(tar), scratch)
        snap.commit(name, key)

    # -- prepare, commit, view -------------------------------------------------

    def test_prepare_without_parent_is_empty_and_writable(
        self, snapshotter: Snapshotter, target: Path
    ) -> None:
        mounts = snapshotter.prepare("rootfs")
        with mounted(mounts, target):
            assert tree(target) == {}
            (target / "hello").write_text("world")
        snapshotter.commit("base", "rootfs")
        with mounted(snapshotter.view("look", "base"), target):
            assert tree(target) == {"hello": "file:world"}

    def test_child_sees_parent_and_changes_stay_in_child(
        self, snapshotter: Snapshotter, target: Path
    ) -> None:
        with mounted(snapshotter.prepare("a"), target):
            (target / "keep").write_text("1")
            (target / "gone").write_text("2")
            (target / "dir").mkdir()
            (target / "dir" / "inner").write_text("3")
        snapshotter.commit("base", "a")
        with mounted(snapshotter.prepare("b", "base"), target):
            assert tree(target) == {
                "keep": "file:1",
                "gone": "file:2",
                "dir": "dir",
                "dir/inner": "file:3",
            }
            (target / "gone").unlink()
            (target / "keep").write_text("changed")
            (target / "new").write_text("4")
        snapshotter.commit("top", "b")
        with mounted(snapshotter.view("v-top", "top"), target):
            assert tree(target) == {
                "keep": "file:changed",
                "new": "file:4",
                "dir": "dir",
                "dir/inner": "file:3",
            }
        with mounted(snapshotter.view("v-base", "base"), target):
            assert tree(target)["keep"] == "file:1"
            assert "gone" in tree(target)

    def test_mounts_of_an_active_snapshot_can_be_asked_again(
        self, snapshotter: Snapshotter, target: Path
    ) -> None:
        snapshotter.prepare("a")
        with mounted(snapshotter.mounts("a"), target):
            (target / "f").write_text("x")
        with mounted(snapshotter.mounts("a"), target):
            assert (target / "f").read_text() == "x"

    def test_view_is_read_only(self, snapshotter: Snapshotter, target: Path) -> None:
        snapshotter.prepare("a")
        snapshotter.commit("base", "a")
        with mounted(snapshotter.view("v", "base"), target):
            with pytest.raises(OSError) as caught:
                (target / "f").write_text("x")
            assert caught.value.errno == errno.EROFS

    def test_metadata_and_ownership_survive_layers(
        self, snapshotter: Snapshotter, target: Path, tmp_path: Path
    ) -> None:
        base = layer(
            ("dir", "bin", 0o755),
            ("file", "bin/tool", b"#!", 0o4755, 0, 0),
            ("file", "owned", b"o", 0o640, 1234, 5678),
            ("symlink", "bin/alias", "tool"),
            ("symlink", "abs", "/etc/passwd"),
            ("hardlink", "bin/tool2", "bin/tool"),
            ("fifo", "pipe"),
            ("xattr", "tagged", b"t", {"user.cargohold": "yes"}),
        )
        self.commit_layer(snapshotter, "l1", None, base, tmp_path)
        with mounted(snapshotter.prepare("c", "l1"), target):
            tool = os.lstat(target / "bin/tool")
            assert stat.S_IMODE(tool.st_mode) == 0o4755
            owned = os.lstat(target / "owned")
            assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (
                1234,
                5678,
                0o640,
            )
            assert os.readlink(target / "bin/alias") == "tool"
            assert os.readlink(target / "abs") == "/etc/passwd"
            assert os.lstat(target / "bin/tool2").st_ino == tool.st_ino
            assert stat.S_ISFIFO(os.lstat(target / "pipe").st_mode)
            assert int(tool.st_mtime) == 1_700_000_000
            try:
                value = os.getxattr(target / "tagged", "user.cargohold")
            except OSError as err:  # tmpfs before 6.6 and some others lack user.*
                assert err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
            else:
                assert value == b"yes"

    def test_whiteouts_are_deletions_through_mounts(
        self, snapshotter: Snapshotter, target: Path, tmp_path: Path
    ) -> None:
        bottom = layer(
            ("dir", "etc"),
            ("file", "etc/keep", b"k"),
            ("file", "etc/drop", b"d"),
            ("dir", "data"),
            ("file", "data/old1", b"1"),
            ("dir", "data/sub"),
            ("file", "data/sub/old2", b"2"),
            ("dir", "tree"),
            ("file", "tree/leaf", b"l"),
        )
        middle = layer(
            ("dir", "etc"),
            ("whiteout", "etc/drop"),
            ("dir", "data"),
            ("opaque", "data"),
            ("file", "data/new", b"n"),
            ("whiteout", "tree"),
            ("file", "tree", b"now a file"),
        )
        top = layer(("dir", "etc"), ("file", "etc/drop", b"back"), ("whiteout", "data/new"))
        self.commit_layer(snapshotter, "l1", None, bottom, tmp_path)
        self.commit_layer(snapshotter, "l2", "l1", middle, tmp_path)
        expected = {
            "etc": "dir",
            "etc/keep": "file:k",
            "data": "dir",
            "data/new": "file:n",
            "tree": "file:now a file",
        }
        with mounted(snapshotter.view("v2", "l2"), target):
            assert tree(target) == expected
        with mounted(snapshotter.prepare("c2", "l2"), target):
            assert tree(target) == expected
        self.commit_layer(snapshotter, "l3", "l2", top, tmp_path)
        with mounted(snapshotter.prepare("c3", "l3"), target):
            assert tree(target) == {
                "etc": "dir",
                "etc/keep": "file:k",
                "etc/drop": "file:back",
                "data": "dir",
                "tree": "file:now a file",
            }

    def test_deep_chain(self, snapshotter: Snapshotter, target: Path, tmp_path: Path) -> None:
        parent: str | None = None
        for i in range(self.deep_layers):
            name = f"deep-{i:03d}"
            self.commit_layer(
                snapshotter, name, parent, layer(("file", f"f{i:03d}", b"x")), tmp_path
            )
            parent = name
        with mounted(snapshotter.prepare("container", parent), target):
            assert len(os.listdir(target)) == self.deep_layers
            (target / "written").write_text("ok")
            assert (target / "f000").read_text() == "x"

    # -- what is refused -------------------------------------------------------

    def test_remove_of_a_parent_is_refused(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("a")
        snapshotter.commit("base", "a")
        snapshotter.prepare("child", "base")
        with pytest.raises(InUse, match="child"):
            snapshotter.remove("base")
        assert snapshotter.stat("base").kind is Kind.COMMITTED
        snapshotter.remove("child")
        snapshotter.remove("base")
        with pytest.raises(NotFound):
            snapshotter.stat("base")
        assert snapshotter.driver.ids() == []

    def test_bad_requests_change_nothing(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("a")
        with pytest.raises(Conflict):
            snapshotter.prepare("a")
        with pytest.raises(InvalidArgument, match="not committed"):
            snapshotter.prepare("b", "a")
        with pytest.raises(NotFound):
            snapshotter.prepare("c", "missing")
        with pytest.raises(NotFound):
            snapshotter.mounts("missing")
        with pytest.raises(InvalidArgument):
            snapshotter.prepare("")
        snapshotter.commit("base", "a")
        with pytest.raises(InvalidArgument, match="committed"):
            snapshotter.mounts("base")
        snapshotter.view("v", "base")
        with pytest.raises(InvalidArgument):
            snapshotter.commit("v2", "v")
        snapshotter.prepare("d")
        with pytest.raises(Conflict):
            snapshotter.commit("base", "d")
        assert snapshotter.stat("d").kind is Kind.ACTIVE
        assert sorted(i.key for i in snapshotter.walk()) == ["base", "d", "v"]
        assert len(snapshotter.driver.ids()) <= 3

    # -- stat, usage, walk ---------------------------------------------------

    def test_stat_usage_walk(self, snapshotter: Snapshotter, target: Path) -> None:
        snapshotter.prepare("a", labels={"team": "x"})
        with mounted(snapshotter.mounts("a"), target):
            (target / "big").write_bytes(os.urandom(1 << 20))
        before = snapshotter.usage("a")
        assert before.size >= 1 << 20
        assert before.inodes >= 2
        snapshotter.commit("base", "a", labels={"layer": "1"})
        snapshotter.prepare("c", "base")
        info = snapshotter.stat("c")
        assert (info.kind, info.parent) == (Kind.ACTIVE, "base")
        assert snapshotter.stat("base").labels == {"team": "x", "layer": "1"}
        if self.usage_excludes_parents:
            assert snapshotter.usage("c").size < 1 << 20  # the child's own data only
        walked = {i.key: (i.kind, i.parent) for i in snapshotter.walk()}
        assert walked == {"base": (Kind.COMMITTED, None), "c": (Kind.ACTIVE, "base")}
        active = snapshotter.walk(lambda i: i.kind is Kind.ACTIVE)
        assert [i.key for i in active] == ["c"]

    def test_cleanup_removes_orphaned_data(self, snapshotter: Snapshotter) -> None:
        snapshotter.prepare("a")
        snapshotter.driver.create("999999", [], Kind.ACTIVE)
        assert snapshotter.cleanup() == ["999999"]
        assert "999999" not in snapshotter.driver.ids()
        assert snapshotter.exists("a")


def remove_all(snap: Snapshotter) -> None:
    """Remove every snapshot of ``snap``, children before parents."""
    while infos := snap.walk():
        parents = {i.parent for i in infos}
        for info in infos:
            if info.key not in parents:
                snap.remove(info.key)


def _detach_under(path: Path) -> None:
    prefix = str(path) + "/"
    targets = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for mountpoint in reversed(targets):
        with contextlib.suppress(OSError):
            kmounts.umount(mountpoint, detach=True)
