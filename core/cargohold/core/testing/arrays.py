"""The block-array conformance suite, for authors of array backends.

Subclass `BlockArrayConformance` in a test module and pytest runs every check
on your backend::

    from cargohold.core.testing.arrays import BlockArrayConformance

    class TestMyArray(BlockArrayConformance):
        array_class = MyArray
        settings = {"address": "https://array.example:8443"}

Settings that depend on the test (a temporary pool, a server's address) come
from overriding the ``array_settings`` fixture. Each test builds the backend
on a fresh private directory; every volume it leaves is detached and deleted
afterwards, and any mount left under that directory is detached, so a failing
test leaks nothing. Checks of capabilities the backend does not declare check
instead that it refuses them with `NotSupported`.

Data is written through what `BlockArray.attach` returns: raw bytes at fixed
offsets of a block device, or a file in a directory. Volume sizes are
`volume_size` (64 MiB unless set), within what a small test pool holds.

This module needs pytest: ``pip install 'cargohold[testing]'``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

try:
    import pytest
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cargohold.core.testing.arrays needs pytest: pip install 'cargohold[testing]'"
    ) from err

from cargohold.core.api.arrays import ArrayContext, BlockArray
from cargohold.core.api.errors import CargoholdError, Conflict, NotFound, NotSupported
from cargohold.core.kernel import mounts

__all__ = ["BlockArrayConformance"]

_OFFSETS = (0, 4096, 5 * 1024**2)  # the start, past the first block, well inside


def new_name() -> str:
    return f"ca-{secrets.token_hex(4)}"


def write(path: Path, data: bytes) -> None:
    """Write ``data`` into an attached volume: at every test offset, or as a file."""
    if path.is_dir():
        (path / "conformance").write_bytes(data)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for offset in _OFFSETS:
            os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, length: int) -> bytes:
    """What `write` wrote (the same at every offset, or this raises)."""
    if path.is_dir():
        target = path / "conformance"
        return target.read_bytes() if target.exists() else b""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        found = {os.pread(fd, length, offset) for offset in _OFFSETS}
    finally:
        os.close(fd)
    assert len(found) == 1, f"{path}: the test offsets hold different data: {found}"
    return found.pop()


class BlockArrayConformance:
    """The checks every array backend must pass. Subclass it as ``Test<YourArray>``."""

    array_class: ClassVar[type[BlockArray] | None] = None
    settings: ClassVar[Mapping[str, str]] = {}
    volume_size: ClassVar[int] = 64 * 1024**2

    # -- fixtures ----------------------------------------------------------------

    @pytest.fixture
    def array_settings(self) -> dict[str, str]:
        return dict(self.settings)

    @pytest.fixture
    def array(self, tmp_path: Path, array_settings: dict[str, str]) -> Iterator[BlockArray]:
        if self.array_class is None:
            raise TypeError(f"{type(self).__name__}: set array_class")
        root = tmp_path / "array"
        root.mkdir()
        backend = self.array_class(ArrayContext(root, array_settings))
        try:
            yield backend
        finally:
            try:
                for volume in backend.list():
                    try:
                        backend.detach(volume.name)
                    finally:
                        backend.delete(volume.name)
                backend.close()
            finally:
                for entry in mounts.mounts_under(tmp_path):
                    mounts.umount(entry.target, detach=True)

    def provision(self, array: BlockArray, name: str | None = None) -> str:
        name = name or new_name()
        array.provision(name, self.volume_size)
        return name

    # -- volumes -----------------------------------------------------------------

    def test_capabilities_hang_together(self, array: BlockArray) -> None:
        caps = array.capabilities
        assert caps.thin or caps.thick, "a backend provisions thin or thick volumes"
        assert not caps.clone_from_snapshot or caps.snapshot
        assert not caps.online_resize or caps.resize
        assert array.presents in ("block", "filesystem")
        assert not caps.enforces_size or array.presents == "filesystem"

    def test_provision_get_list_delete(self, array: BlockArray) -> None:
        name = self.provision(array)
        got = array.get(name)
        assert got.name == name
        assert got.size is None or got.size >= self.volume_size
        assert name in [v.name for v in array.list()]
        array.delete(name)
        with pytest.raises(NotFound):
            array.get(name)
        assert name not in [v.name for v in array.list()]

    def test_provision_of_an_existing_name_is_a_conflict(self, array: BlockArray) -> None:
        name = self.provision(array)
        with pytest.raises(Conflict):
            array.provision(name, self.volume_size)

    def test_missing_volumes_are_not_found(self, array: BlockArray) -> None:
        missing = new_name()
        for call in (array.get, array.delete, array.attach):
            with pytest.raises(NotFound):
                call(missing)
        assert array.attached(missing) is None
        array.detach(missing)  # nothing attached: no error

    def test_thick_volumes_where_declared(self, array: BlockArray) -> None:
        if not array.capabilities.thick:
            return
        name = new_name()
        array.provision(name, self.volume_size, thin=False)
        assert array.get(name).thin is False

    def test_capacity_counts_provisioned_volumes(self, array: BlockArray) -> None:
        before = array.capacity()
        assert before.total > 0 and 0 <= before.free <= before.total
        self.provision(array)
        after = array.capacity()
        if array.default_size is not None or array.capabilities.enforces_size:
            assert after.provisioned >= before.provisioned + self.volume_size

    # -- host mapping ------------------------------------------------------------

    def test_attach_maps_the_volume_once(self, array: BlockArray) -> None:
        name = self.provision(array)
        path = array.attach(name)
        assert path.exists()
        assert path.is_dir() is (array.presents == "filesystem")
        assert array.attach(name) == path, "attach of an attached volume: the same path"
        assert array.attached(name) == path
        array.detach(name)
        array.detach(name)  # twice: no error
        if array.presents == "block":
            assert array.attached(name) is None

    def test_data_survives_detach_and_attach(self, array: BlockArray) -> None:
        name, data = self.provision(array), secrets.token_bytes(512)
        write(array.attach(name), data)
        array.detach(name)
        assert read(array.attach(name), len(data)) == data
        array.detach(name)

    def test_volumes_are_apart(self, array: BlockArray) -> None:
        a, b = self.provision(array), self.provision(array)
        write(array.attach(a), b"A" * 512)
        write(array.attach(b), b"B" * 512)
        assert read(array.attach(a), 512) == b"A" * 512
        for name in (a, b):
            array.detach(name)

    def test_delete_removes_what_attach_made(self, array: BlockArray) -> None:
        name = self.provision(array)
        array.attach(name)
        array.detach(name)
        array.delete(name)
        assert array.attached(name) is None

    # -- snapshots and clones ----------------------------------------------------

    def test_snapshot_is_a_point_in_time(self, array: BlockArray) -> None:
        name = self.provision(array)
        if not array.capabilities.snapshot:
            with pytest.raises(NotSupported):
                array.snapshot(name, "s1")
            return
        path = array.attach(name)
        write(path, b"1" * 512)
        array.detach(name)
        array.snapshot(name, "s1")
        write(array.attach(name), b"2" * 512)
        array.detach(name)
        assert [s.name for s in array.snapshots(name)] == ["s1"]
        with pytest.raises(Conflict):
            array.snapshot(name, "s1")
        if array.capabilities.clone_from_snapshot:
            restored = new_name()
            array.clone(name, restored, snapshot="s1")
            assert read(array.attach(restored), 512) == b"1" * 512
            array.detach(restored)
        assert read(array.attach(name), 512) == b"2" * 512
        array.detach(name)

    def test_snapshots_list_in_order_and_go(self, array: BlockArray) -> None:
        if not array.capabilities.snapshot:
            return
        name = self.provision(array)
        for snap in ("a", "b", "c"):
            array.snapshot(name, snap)
        assert [s.name for s in array.snapshots(name)] == ["a", "b", "c"]
        array.delete_snapshot(name, "b")
        assert [s.name for s in array.snapshots(name)] == ["a", "c"]
        with pytest.raises(NotFound):
            array.delete_snapshot(name, "b")
        with pytest.raises(NotFound):
            array.snapshot(new_name(), "x")
        with pytest.raises(NotFound):
            array.snapshots(new_name())
        array.delete(name)  # with its snapshots

    def test_clone_is_independent(self, array: BlockArray) -> None:
        source = self.provision(array)
        if not array.capabilities.clone:
            with pytest.raises(NotSupported):
                array.clone(source, new_name())
            return
        write(array.attach(source), b"S" * 512)
        array.detach(source)
        clone = new_name()
        made = array.clone(source, clone)
        assert made.name == clone
        with pytest.raises(Conflict):
            array.clone(source, clone)
        with pytest.raises(NotFound):
            array.clone(new_name(), new_name())
        assert read(array.attach(clone), 512) == b"S" * 512
        write(array.attach(clone), b"C" * 512)
        assert read(array.attach(source), 512) == b"S" * 512
        write(array.attach(source), b"T" * 512)
        assert read(array.attach(clone), 512) == b"C" * 512
        array.detach(source)
        array.detach(clone)
        array.delete(source)
        assert read(array.attach(clone), 512) == b"C" * 512, "a clone outlives its source"
        array.detach(clone)

    # -- resize and usage --------------------------------------------------------

    def test_resize_grows(self, array: BlockArray) -> None:
        name = self.provision(array)
        if not array.capabilities.resize:
            with pytest.raises(NotSupported):
                array.resize(name, 2 * self.volume_size)
            return
        write(array.attach(name), b"R" * 512)
        if not array.capabilities.online_resize:
            array.detach(name)
        grown = array.resize(name, 2 * self.volume_size)
        assert grown.size is None or grown.size >= 2 * self.volume_size
        path = array.attach(name)
        if not path.is_dir():
            with open(path, "rb") as device:
                assert device.seek(0, os.SEEK_END) >= 2 * self.volume_size
        assert read(path, 512) == b"R" * 512
        array.detach(name)
        with pytest.raises(CargoholdError):  # volumes only grow
            array.resize(name, self.volume_size // 2)

    def test_usage(self, array: BlockArray) -> None:
        name = self.provision(array)
        if not array.capabilities.usage:
            with pytest.raises(NotSupported):
                array.usage(name)
            return
        assert array.usage(name) >= 0
        with pytest.raises(NotFound):
            array.usage(new_name())
