"""The bind driver on real kernel mounts: read-only binds, propagation, the user's directory."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import InvalidArgument, NotFound, NotSupported, Runtime
from cargohold.core.kernel import mounts

pytestmark = pytest.mark.root


def mounted_at(path: Path) -> bool:
    real = os.path.realpath(path)
    return any(entry.target == real for entry in mounts.mount_table())


def tmpfs(target: Path) -> None:
    target.mkdir(exist_ok=True)
    mounts.mount("tmpfs", target, "tmpfs", 0, "size=1m")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose every mount under ``tmp_path`` is gone afterwards, whatever happened."""
    runtime = Runtime(tmp_path / "state", autoload=False)
    try:
        yield runtime
    finally:
        runtime.close()
        for entry in mounts.mounts_under(tmp_path):
            mounts.umount(entry.target, detach=True)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "src"
    directory.mkdir()
    (directory / "mine").write_text("the user's file")
    return directory


@pytest.fixture
def shared_source(tmp_path: Path) -> Path:
    """A directory on a shared mount, so that mounts under it can propagate."""
    top = tmp_path / "shared"
    tmpfs(top)
    mounts.mount("none", top, None, mounts.MS_SHARED)
    (top / "src").mkdir()
    return top / "src"


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): p.read_text() if p.is_file() else "<dir>"
        for p in sorted(directory.rglob("*"))
    }


# -- create-time checks ----------------------------------------------------------


@pytest.mark.parametrize(
    ("make_opts", "error", "message"),
    [
        (lambda t: {"source": "relative/dir"}, InvalidArgument, "must be an absolute path"),
        (lambda t: {"source": str(t / "a-file")}, InvalidArgument, "is a file, not a directory"),
        (lambda t: {"source": str(t / "missing")}, NotFound, "pass -o create=true"),
        (lambda t: {}, InvalidArgument, "needs option source"),
        (lambda t: {"source": str(t), "propagation": "sideways"}, InvalidArgument, "not one of"),
    ],
)
def test_bad_sources_are_refused_and_nothing_is_made(
    rt: Runtime, tmp_path: Path, make_opts: object, error: type[Exception], message: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    opts = make_opts(tmp_path)  # type: ignore[operator]
    with pytest.raises(error, match=message):
        rt.volumes.create("vol", "bind", opts)
    assert rt.volumes.list() == []
    assert list(rt.drivers.get("bind").root.iterdir()) == []
    assert not (tmp_path / "missing").exists()


def test_create_true_makes_a_missing_source(rt: Runtime, tmp_path: Path) -> None:
    wanted = tmp_path / "new" / "nested"
    rt.volumes.create("made", "bind", {"source": str(wanted), "create": "true"})
    assert wanted.is_dir()
    path = rt.volumes.mount("made", "c1")
    (path / "f").write_text("through the volume")
    rt.volumes.unmount("made", "c1")
    assert (wanted / "f").read_text() == "through the volume"


# -- the mount -------------------------------------------------------------------


def test_mount_is_a_real_bind_of_the_source(rt: Runtime, source: Path) -> None:
    rt.volumes.create("bb", "bind", {"source": str(source)})
    path = rt.volumes.mount("bb", "c1")
    assert mounted_at(path)
    assert (path / "mine").read_text() == "the user's file"
    (path / "new").write_text("written in the volume")
    assert (source / "new").read_text() == "written in the volume"
    rt.volumes.unmount("bb", "c1")
    assert not mounted_at(path)
    assert not (path / "mine").exists()  # only our empty mountpoint is left


def test_readonly_is_a_real_read_only_bind(rt: Runtime, source: Path) -> None:
    tmpfs(source / "sub")  # a mount inside the source: read-only through the volume too
    rt.volumes.create("ro", "bind", {"source": str(source), "readonly": "true"})
    path = rt.volumes.mount("ro", "c1")
    for target in (path / "f", path / "sub" / "f", path / "mine"):
        with pytest.raises(OSError) as raised:
            target.write_text("must not land")
        assert raised.value.errno == errno.EROFS, target
    (source / "f").write_text("the source stays writable")
    (source / "sub" / "f").write_text("and so do its mounts")
    assert (path / "f").read_text() == "the source stays writable"
    assert (path / "sub" / "f").read_text() == "and so do its mounts"
    rt.volumes.unmount("ro", "c1")


def test_source_removed_after_create_is_a_clear_error(rt: Runtime, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    rt.volumes.create("gg", "bind", {"source": str(gone)})
    gone.rmdir()
    with pytest.raises(NotFound, match="is gone"):
        rt.volumes.mount("gg", "c1")
    assert rt.volumes.get("gg").refs == {}


# -- propagation -------------------------------------------------------------------


def test_rshared_passes_mounts_both_ways(rt: Runtime, shared_source: Path) -> None:
    rt.volumes.create("sh", "bind", {"source": str(shared_source), "propagation": "rshared"})
    path = rt.volumes.mount("sh", "c1")
    tmpfs(shared_source / "later")  # made under the source after the volume was mounted
    assert mounted_at(path / "later")
    (shared_source / "later" / "f").write_text("propagated")
    assert (path / "later" / "f").read_text() == "propagated"
    tmpfs(path / "back")  # and a mount made in the volume shows in the source
    assert mounted_at(shared_source / "back")
    rt.volumes.unmount("sh", "c1")
    assert not mounted_at(path)
    # unmounting the volume left the source's own mounts alone
    assert (shared_source / "later" / "f").read_text() == "propagated"
    assert mounted_at(shared_source / "back")


def test_rslave_receives_mounts_but_sends_none(rt: Runtime, shared_source: Path) -> None:
    rt.volumes.create("sl", "bind", {"source": str(shared_source), "propagation": "rslave"})
    path = rt.volumes.mount("sl", "c1")
    tmpfs(shared_source / "later")
    assert mounted_at(path / "later")
    (path / "own").mkdir()
    tmpfs(path / "own")
    assert not mounted_at(shared_source / "own")
    rt.volumes.unmount("sl", "c1")
    assert mounted_at(shared_source / "later")


def test_rprivate_by_default_receives_nothing(rt: Runtime, shared_source: Path) -> None:
    rt.volumes.create("pr", "bind", {"source": str(shared_source)})
    path = rt.volumes.mount("pr", "c1")
    tmpfs(shared_source / "later")
    assert not mounted_at(path / "later")
    rt.volumes.unmount("pr", "c1")


@pytest.mark.parametrize("propagation", ["rshared", "rslave"])
def test_propagation_from_a_private_mount_says_what_to_do(
    rt: Runtime, tmp_path: Path, propagation: str
) -> None:
    private = tmp_path / "private"
    tmpfs(private)  # a fresh mount is private here
    opts = {"source": str(private), "propagation": propagation}
    with pytest.raises(NotSupported, match=f"mount --make-rshared {private}"):
        rt.volumes.create("pp", "bind", opts)
    assert rt.volumes.list() == []


# -- the directory is the user's -------------------------------------------------------


def test_remove_never_deletes_the_users_directory(rt: Runtime, source: Path) -> None:
    (source / "deep").mkdir()
    (source / "deep" / "f").write_text("nested")
    before = snapshot(source)
    rt.volumes.create("keep", "bind", {"source": str(source)})
    rt.volumes.mount("keep", "c1")
    rt.volumes.unmount("keep", "c1")
    rt.volumes.remove("keep")
    assert snapshot(source) == before
    assert not (rt.drivers.get("bind").root / "keep").exists()


def test_driver_remove_of_a_still_mounted_volume_keeps_the_directory(
    rt: Runtime, source: Path
) -> None:
    """After a crash the core may remove a volume the kernel still has mounted."""
    before = snapshot(source)
    rt.volumes.create("stale", "bind", {"source": str(source)})
    driver = rt.drivers.get("bind")
    path = driver.mount("stale", "lost-id", {"source": str(source)})
    driver.mount("stale", "other-id", {"source": str(source)})
    driver.remove("stale", {"source": str(source)})
    assert not mounted_at(path)
    assert snapshot(source) == before


def test_paths_with_spaces_and_odd_characters(tmp_path: Path) -> None:
    """The mount table escapes such paths; mounted or not must still be read right."""
    odd = tmp_path / "with space\tand\\slash"
    odd.mkdir()
    try:
        with Runtime(odd / "state dir", autoload=False) as runtime:
            runtime.volumes.create("odd", "bind", {"source": str(odd)})
            path = runtime.volumes.mount("odd", "c1")
            assert " " in str(path) and mounted_at(path)
            (path / "f").write_text("x")
            runtime.volumes.unmount("odd", "c1")
            assert not mounted_at(path)
            runtime.volumes.remove("odd")
            assert (odd / "f").exists()
    finally:
        for entry in mounts.mounts_under(tmp_path):
            mounts.umount(entry.target, detach=True)
