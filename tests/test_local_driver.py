"""The local driver's own features, on real kernel mounts: typed devices and size limits."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import InUse, InvalidArgument, NotSupported, Runtime
from cargohold.core.kernel import mounts

MiB = 1024 * 1024


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def loop_device(image: Path, size: str) -> Iterator[str]:
    """A sparse image file on a fresh loop device, detached afterwards whatever happens."""
    run("truncate", "-s", size, str(image))
    device = run("losetup", "--find", "--show", str(image))
    try:
        yield device
    finally:
        run("losetup", "-d", device)
        image.unlink()


@contextlib.contextmanager
def filesystem(tmp_path: Path, fstype: str, mount_options: str = "") -> Iterator[Path]:
    """A fresh filesystem of ``fstype`` on a loop device, mounted under ``tmp_path``."""
    target = tmp_path / f"{fstype}-fs"
    target.mkdir(exist_ok=True)
    with loop_device(tmp_path / f"{fstype}.img", "320M") as device:
        mkfs = {"xfs": ["mkfs.xfs", "-q", "-f"], "btrfs": ["mkfs.btrfs", "-q", "-f"]}[fstype]
        run(*mkfs, device)
        mounts.mount(device, target, fstype, 0, mount_options or None)
        try:
            yield target
        finally:
            for entry in mounts.mounts_under(target):
                mounts.umount(entry.target, detach=True)


def write(path: Path, size: int) -> None:
    """Write ``size`` bytes and make the filesystem account for them."""
    chunk = b"\xa5" * MiB
    with path.open("wb") as file:
        for _ in range(size // MiB):
            file.write(chunk)
        file.write(chunk[: size % MiB])
        file.flush()
        os.fsync(file.fileno())


def mount_entry(path: Path) -> mounts.MountEntry | None:
    real = os.path.realpath(path)
    found = [e for e in mounts.mount_table() if e.target == real]
    return found[-1] if found else None


@pytest.fixture
def local(runtime: Runtime) -> Runtime:
    return runtime


def driver_root(runtime: Runtime) -> Path:
    return runtime.drivers.get("local").root


# -- options checked at create time --------------------------------------------


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"type": "tmpfs"}, "type and device go together"),
        ({"device": "/dev/null"}, "type and device go together"),
        ({"o": "size=1m"}, "needs type and device"),
        ({"type": "ext4", "device": "/dev/loop0", "size": "10m"}, "ext4 device has the size"),
        ({"type": "tmpfs", "device": "tmpfs", "o": "size=1m", "size": "2m"}, "given twice"),
        ({"type": "none", "device": "relative/dir", "o": "bind"}, "absolute path"),
        ({"type": "none", "device": "/no/such/dir/here", "o": "bind"}, "existing directory"),
        ({"colour": "red"}, "invalid option 'colour'"),
    ],
)
def test_contradictory_options_are_refused_and_nothing_is_made(
    local: Runtime, opts: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        local.volumes.create("vol", "local", opts)
    assert local.volumes.list() == []
    assert list(driver_root(local).iterdir()) == []


def test_size_without_a_quota_says_what_to_do(local: Runtime) -> None:
    if mounts.mount_of(driver_root(local)).fstype == "btrfs":
        pytest.skip("the test's state directory is on btrfs, which may have quotas")
    with pytest.raises(NotSupported) as raised:
        local.volumes.create("vol", "local", {"size": "10m"})
    message = str(raised.value)
    assert "prjquota" in message and "type=tmpfs" in message
    assert local.volumes.list() == []
    assert list(driver_root(local).iterdir()) == []


# -- typed devices: mounted on the first mount, unmounted after the last --------


@pytest.mark.root
def test_tmpfs_volume_is_a_real_tmpfs_with_its_size(local: Runtime) -> None:
    local.volumes.create("scratch", "local", {"type": "tmpfs", "device": "tmpfs", "size": "2m"})
    data = driver_root(local) / "scratch" / "_data"
    assert mount_entry(data) is None  # nothing mounted until someone uses it
    path = local.volumes.mount("scratch", "c1")
    local.volumes.mount("scratch", "c2")
    entry = mount_entry(path)
    assert entry is not None and entry.fstype == "tmpfs"
    assert "size=2048k" in entry.super_options
    write(path / "fits", 1 * MiB)
    with pytest.raises(OSError) as raised:
        write(path / "too-much", 2 * MiB)
    assert raised.value.errno == errno.ENOSPC
    local.volumes.unmount("scratch", "c1")
    assert mount_entry(path) is not None  # c2 still uses it
    local.volumes.unmount("scratch", "c2")
    assert mount_entry(path) is None


@pytest.mark.root
def test_tmpfs_mount_options_pass_through(local: Runtime) -> None:
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=3m,mode=0700,noexec"}
    local.volumes.create("opts", "local", opts)
    path = local.volumes.mount("opts", "c1")
    entry = mount_entry(path)
    assert entry is not None
    assert "noexec" in entry.options and "size=3072k" in entry.super_options
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    local.volumes.unmount("opts", "c1")


@pytest.mark.root
def test_block_device_volume_keeps_its_data_between_mounts(local: Runtime, tmp_path: Path) -> None:
    with loop_device(tmp_path / "disk.img", "64M") as device:
        run("mkfs.ext4", "-q", "-F", device)
        local.volumes.create("disk", "local", {"type": "ext4", "device": device})
        try:
            path = local.volumes.mount("disk", "c1")
            entry = mount_entry(path)
            assert entry is not None and (entry.fstype, entry.source) == ("ext4", device)
            (path / "f").write_text("on the device")
            local.volumes.unmount("disk", "c1")
            assert mount_entry(path) is None
            assert not (path / "f").exists()  # the bytes are on the device, not the state dir
            path = local.volumes.mount("disk", "c2")
            assert (path / "f").read_text() == "on the device"
            local.volumes.unmount("disk", "c2")
        finally:
            local.volumes.remove("disk", force=True)
        assert mount_entry(path) is None


@pytest.mark.root
def test_image_file_volume_gets_a_loop_device_that_goes_with_the_mount(
    local: Runtime, tmp_path: Path
) -> None:
    image = tmp_path / "vol.img"
    run("truncate", "-s", "64M", str(image))
    run("mkfs.ext4", "-q", "-F", str(image))
    local.volumes.create("img", "local", {"type": "ext4", "device": str(image)})
    path = local.volumes.mount("img", "c1")
    try:
        assert run("losetup", "-j", str(image)) != ""
        (path / "f").write_text("in the image")
    finally:
        local.volumes.unmount("img", "c1")
    assert mount_entry(path) is None
    assert run("losetup", "-j", str(image)) == ""  # freed with the mount
    local.volumes.remove("img")


@pytest.mark.root
def test_bind_typed_volume_writes_to_the_directory_and_remove_keeps_it(
    local: Runtime, tmp_path: Path
) -> None:
    source = tmp_path / "srv"
    source.mkdir()
    (source / "existing").write_text("the user's")
    local.volumes.create("srv", "local", {"type": "none", "o": "bind", "device": str(source)})
    path = local.volumes.mount("srv", "c1")
    assert (path / "existing").read_text() == "the user's"
    (path / "new").write_text("through the volume")
    local.volumes.unmount("srv", "c1")
    assert mount_entry(path) is None
    local.volumes.remove("srv")
    assert (source / "existing").read_text() == "the user's"
    assert (source / "new").read_text() == "through the volume"


@pytest.mark.root
def test_unmounting_an_rbind_volume_leaves_the_sources_mounts_alone(
    local: Runtime, tmp_path: Path
) -> None:
    top = tmp_path / "shared"
    top.mkdir()
    mounts.mount("tmpfs", top, "tmpfs", 0, "size=1m")
    try:
        mounts.mount("none", top, None, mounts.MS_SHARED)
        (top / "later").mkdir()
        opts = {"type": "none", "o": "rbind", "device": str(top)}
        local.volumes.create("rb", "local", opts)
        path = local.volumes.mount("rb", "c1")
        mounts.mount("tmpfs", top / "later", "tmpfs", 0, "size=1m")  # after the volume's mount
        assert mount_entry(path / "later") is not None  # a shared source passes it on
        (top / "later" / "f").write_text("the user's mount")
        local.volumes.unmount("rb", "c1")
        assert mount_entry(path) is None
        assert (top / "later" / "f").read_text() == "the user's mount"
    finally:
        for entry in mounts.mounts_under(tmp_path):
            mounts.umount(entry.target, detach=True)


@pytest.mark.root
def test_bind_typed_volume_read_only(local: Runtime, tmp_path: Path) -> None:
    source = tmp_path / "ro-src"
    source.mkdir()
    opts = {"type": "none", "o": "bind,ro", "device": str(source)}
    local.volumes.create("ro", "local", opts)
    path = local.volumes.mount("ro", "c1")
    with pytest.raises(OSError) as raised:
        (path / "f").write_text("x")
    assert raised.value.errno == errno.EROFS
    local.volumes.unmount("ro", "c1")


@pytest.mark.root
def test_a_device_that_cannot_be_mounted_is_a_clear_error_and_no_reference(
    local: Runtime,
) -> None:
    local.volumes.create("bad", "local", {"type": "nosuchfs", "device": "/dev/null"})
    with pytest.raises(InvalidArgument, match=r"volume bad: mounting nosuchfs from /dev/null"):
        local.volumes.mount("bad", "c1")
    assert local.volumes.get("bad").refs == {}
    local.volumes.remove("bad")


@pytest.mark.root
def test_busy_device_is_not_unmounted_and_the_reference_stays(local: Runtime) -> None:
    local.volumes.create("busy", "local", {"type": "tmpfs", "device": "tmpfs"})
    path = local.volumes.mount("busy", "c1")
    holder = subprocess.Popen(["sleep", "30"], cwd=path)
    try:
        with pytest.raises(InUse, match="still in use"):
            local.volumes.unmount("busy", "c1")
        assert local.volumes.get("busy").refs == {"c1": 1}
        assert mount_entry(path) is not None
    finally:
        holder.kill()
        holder.wait()
    local.volumes.unmount("busy", "c1")
    assert mount_entry(path) is None


@pytest.mark.root
def test_remove_never_deletes_through_a_foreign_mount(local: Runtime, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious").write_text("not the volume's")
    local.volumes.create("plain", "local")
    data = driver_root(local) / "plain" / "_data"
    (data / "inner").mkdir()
    mounts.bind(other, data / "inner")
    try:
        with pytest.raises(InUse, match="mounted inside it"):
            local.volumes.remove("plain")
        assert local.volumes.get("plain").name == "plain"
    finally:
        mounts.umount(data / "inner")
    assert (other / "precious").read_text() == "not the volume's"
    local.volumes.remove("plain")


# -- size: a kernel-enforced quota ----------------------------------------------


@pytest.mark.root
def test_size_is_enforced_by_a_btrfs_qgroup(tmp_path: Path) -> None:
    with filesystem(tmp_path, "btrfs") as fs:
        run("btrfs", "quota", "enable", str(fs))
        with Runtime(fs / "state", autoload=False) as rt:
            rt.volumes.create("capped", "local", {"size": "10m"})
            rt.volumes.create("other", "local", {"size": "10m"})
            path = rt.volumes.mount("capped", "c1")
            write(path / "below", 6 * MiB)  # below the limit: fine
            with pytest.raises(OSError) as raised:
                write(path / "past", 6 * MiB)
            assert raised.value.errno in (errno.EDQUOT, errno.ENOSPC)
            # the other volume has a limit of its own, untouched by the first one's use
            write(rt.volumes.mount("other", "c1") / "f", 8 * MiB)
            limits = run("btrfs", "qgroup", "show", "-re", "--raw", str(fs))
            assert limits.count(str(10 * MiB)) == 2, limits
            rt.volumes.unmount("capped", "c1")
            rt.volumes.unmount("other", "c1")
            rt.volumes.remove("capped")
            rt.volumes.remove("other")
            assert str(10 * MiB) not in run("btrfs", "qgroup", "show", "-re", "--raw", str(fs))
            run("btrfs", "subvolume", "sync", str(fs))  # wait for the cleaner to finish
            # the qgroups are gone, or (until the kernel drops them) empty and unlimited
            for line in run("btrfs", "qgroup", "show", "-re", "--raw", str(fs)).splitlines():
                if line.startswith("0/") and not line.startswith("0/5 "):
                    assert line.split()[1:3] == ["0", "0"] and "none" in line, line
            # the name is free again, with a fresh limit
            rt.volumes.create("capped", "local", {"size": "4m"})
            with pytest.raises(OSError):
                write(rt.volumes.mount("capped", "c2") / "f", 5 * MiB)
            rt.volumes.unmount("capped", "c2")
            rt.volumes.remove("capped")


@pytest.mark.root
def test_size_limited_volume_is_removed_after_quotas_are_turned_off(tmp_path: Path) -> None:
    with filesystem(tmp_path, "btrfs") as fs, Runtime(fs / "state", autoload=False) as rt:
        run("btrfs", "quota", "enable", str(fs))
        rt.volumes.create("capped", "local", {"size": "10m"})
        write(rt.volumes.mount("capped", "c1") / "f", MiB)
        rt.volumes.unmount("capped", "c1")
        run("btrfs", "quota", "disable", str(fs))
        rt.volumes.remove("capped")
        assert list(rt.drivers.get("local").root.iterdir()) == []
        assert "capped" not in run("btrfs", "subvolume", "list", str(fs))


@pytest.mark.root
def test_size_on_btrfs_without_quotas_says_how_to_enable_them(tmp_path: Path) -> None:
    with filesystem(tmp_path, "btrfs") as fs, Runtime(fs / "state", autoload=False) as rt:
        with pytest.raises(NotSupported, match=f"btrfs quota enable {fs}"):
            rt.volumes.create("capped", "local", {"size": "10m"})
        assert rt.volumes.list() == []
        assert list(rt.drivers.get("local").root.iterdir()) == []


def kernel_mounts_xfs_with_project_quotas(tmp_path: Path) -> bool:
    try:
        with filesystem(tmp_path, "xfs", "prjquota"):
            return True
    except OSError as err:
        if err.errno != errno.EINVAL:  # "quota support not available in this kernel"
            raise
        return False


@pytest.mark.root
def test_size_on_xfs_is_a_project_quota_or_a_clear_refusal(tmp_path: Path) -> None:
    """With CONFIG_XFS_QUOTA, ``size`` is enforced; without it, refused with what to do."""
    if not kernel_mounts_xfs_with_project_quotas(tmp_path):  # e.g. no CONFIG_XFS_QUOTA
        with filesystem(tmp_path, "xfs") as fs, Runtime(fs / "state", autoload=False) as rt:
            with pytest.raises(NotSupported, match="mount it with project quotas"):
                rt.volumes.create("capped", "local", {"size": "10m"})
            assert list(rt.drivers.get("local").root.iterdir()) == []
        return
    with filesystem(tmp_path, "xfs", "prjquota") as fs, Runtime(fs / "state", autoload=False) as rt:
        rt.volumes.create("capped", "local", {"size": "10m"})
        rt.volumes.create("other", "local", {"size": "10m"})
        path = rt.volumes.mount("capped", "c1")
        write(path / "below", 6 * MiB)
        with pytest.raises(OSError) as raised:
            write(path / "past", 6 * MiB)
        assert raised.value.errno in (errno.EDQUOT, errno.ENOSPC)
        write(rt.volumes.mount("other", "c1") / "f", 8 * MiB)
        projects = run("xfs_quota", "-x", "-c", "report -p -n -b", str(fs))
        rt.volumes.unmount("capped", "c1")
        rt.volumes.unmount("other", "c1")
        rt.volumes.remove("capped")
        rt.volumes.remove("other")
        after = run("xfs_quota", "-x", "-c", "report -p -n -b", str(fs))
        assert projects.count("10240") == 2 and "10240" not in after, (projects, after)


def test_names_of_volumes_with_a_random_suffix_do_not_collide(local: Runtime) -> None:
    """Many volumes side by side: each its own data directory."""
    names = [f"v-{secrets.token_hex(3)}" for _ in range(5)]
    for name in names:
        local.volumes.create(name, "local")
        (local.volumes.mount(name, "c") / "who").write_text(name)
    for name in names:
        assert (local.volumes.mount(name, "d") / "who").read_text() == name
