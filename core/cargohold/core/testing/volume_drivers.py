"""The volume-driver conformance suite, for driver authors to run on their own drivers.

Subclass `VolumeDriverConformance` in a test module and pytest runs every
check on your driver::

    from cargohold.core.testing import VolumeDriverConformance

    class TestMyDriver(VolumeDriverConformance):
        driver_class = MyDriver
        create_options = {"bucket": "test"}   # options of a plain volume

Options that depend on the test (a temporary directory, a server's address)
come from overriding the ``volume_options`` fixture instead. A driver that is
not a class in your hands (one found at run time) comes from overriding the
``driver_plugin`` fixture with a plugin object, and setting ``driver_name``.
Two flags describe drivers whose data behaves differently: ``remove_deletes_data
= False`` (the data outlives the volume, as a bind volume's directory; by
default the driver's own `VolumeDriver.removes_data`) and
``keeps_data_unmounted = False`` (the data lives only while mounted, as tmpfs).
A check that does not fit a driver can be overridden like any test method.

Each test builds a `Runtime` on a temporary state directory, loading only
cargohold's own plugins and yours, and checks the contract both through the
`VolumeService` (what users see) and on the driver directly (what the core
relies on). Calls into the driver are counted by wrapping its methods, so the
mount-counting checks do not take the service's word for it. Every volume a
test leaves behind is unmounted and removed afterwards, and any mount left
under the state directory is detached.

This module needs pytest: ``pip install 'cargohold[testing]'``.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

try:
    import pytest
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cargohold.core.testing.volume_drivers needs pytest: pip install 'cargohold[testing]'"
    ) from err

from cargohold.core.api.errors import Conflict, InUse, InvalidArgument, NotFound
from cargohold.core.api.volume_driver import VolumeDriver
from cargohold.core.testing.harness import (
    BAD_NAMES,
    Harness,
    ProvideDriver,
    different_value,
    new_mount_id,
    new_name,
)

__all__ = ["VolumeDriverConformance"]


class VolumeDriverConformance:
    """The checks every volume driver must pass. Subclass it as ``Test<YourDriver>``."""

    #: The driver under test, registered through a tiny plugin.
    driver_class: ClassVar[type[VolumeDriver] | None] = None
    #: Its name, when ``driver_plugin`` is overridden and there is no class.
    driver_name: ClassVar[str] = ""
    #: Options of a plain volume (see also the ``volume_options`` fixture).
    create_options: ClassVar[Mapping[str, str]] = {}
    #: False for drivers whose data outlives the volume (a bind mount's directory);
    #: None takes the driver class's own `VolumeDriver.removes_data`.
    remove_deletes_data: ClassVar[bool | None] = None
    #: False for drivers whose data lives only while mounted (tmpfs): the checks
    #: that data survives an unmount then check that it is gone instead.
    keeps_data_unmounted: ClassVar[bool] = True

    # -- fixtures a driver author may override -------------------------------

    @pytest.fixture
    def driver_plugin(self) -> object:
        """A plugin object that provides the driver under test."""
        if self.driver_class is None:
            raise TypeError(
                f"{type(self).__name__}: set driver_class, or override the driver_plugin "
                "fixture and set driver_name"
            )
        return ProvideDriver(self.driver_class)

    @pytest.fixture
    def volume_options(self) -> dict[str, str]:
        """Options for a plain volume of this driver, as a user gives them."""
        return dict(self.create_options)

    @pytest.fixture
    def different_options(self, harness: Harness, volume_options: dict[str, str]) -> dict[str, str]:
        """Valid options that differ from ``volume_options`` in one value ({} if none can)."""
        for option in harness.driver.options:
            if option.secret or (option.required and option.name not in volume_options):
                continue
            changed = different_value(option, volume_options.get(option.name))
            return {**volume_options, option.name: changed}
        return {}

    @pytest.fixture
    def harness(self, tmp_path: Path, driver_plugin: object) -> Iterator[Harness]:
        name = self.driver_name or (self.driver_class.name if self.driver_class else "")
        if not name:
            raise TypeError(f"{type(self).__name__}: set driver_name to the driver's name")
        harness = Harness(tmp_path / "state", driver_plugin, name)
        try:
            yield harness
        finally:
            harness.close()

    # -- create ----------------------------------------------------------------

    def test_create_is_idempotent(self, harness: Harness, volume_options: dict[str, str]) -> None:
        name = new_name()
        first = harness.volumes.create(name, harness.driver_name, volume_options)
        again = harness.volumes.create(name, harness.driver_name, volume_options)
        assert (again.name, again.driver, again.options, again.created_at) == (
            first.name,
            first.driver,
            first.options,
            first.created_at,
        )
        assert [v.name for v in harness.volumes.list()] == [name]
        assert harness.calls.count("create", name) == 1

    def test_create_with_different_options_is_a_conflict(
        self,
        harness: Harness,
        volume_options: dict[str, str],
        different_options: dict[str, str],
    ) -> None:
        name = new_name()
        if different_options:
            harness.create(name, volume_options)
            with pytest.raises(Conflict) as raised:
                harness.create(name, different_options)
            changed = [
                k for k in different_options if different_options[k] != volume_options.get(k)
            ]
            assert all(f"option {key}" in str(raised.value) for key in changed), raised.value
        else:  # a driver without options: labels are the other thing a user asks for
            harness.create(name, volume_options, tier="a")
            with pytest.raises(Conflict, match="label tier"):
                harness.create(name, volume_options, tier="b")
        assert harness.volumes.get(name).options == volume_options
        assert harness.calls.count("create", name) == 1

    def test_driver_create_is_idempotent(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        """The core may call create again for a volume the driver has (after a crash)."""
        name = new_name()
        opts = harness.driver_opts(volume_options)
        harness.driver.create(name, opts)
        harness.driver.create(name, opts)
        assert harness.driver.get(name).name == name
        assert [v.name for v in harness.driver.list()].count(name) == 1
        harness.driver.remove(name, opts)
        with pytest.raises(NotFound):
            harness.driver.get(name)

    # -- read ------------------------------------------------------------------

    def test_get_and_list_agree(self, harness: Harness, volume_options: dict[str, str]) -> None:
        names = sorted([new_name(), new_name()])
        for name in names:
            harness.create(name, volume_options)
        assert [v.name for v in harness.volumes.list()] == names
        assert {v.name for v in harness.driver.list()} >= set(names)
        for name in names:
            volume = harness.volumes.get(name)
            assert (volume.name, volume.driver) == (name, harness.driver_name)
            assert harness.driver.get(name).name == name
        harness.volumes.remove(names[0])
        with pytest.raises(NotFound):
            harness.volumes.get(names[0])
        with pytest.raises(NotFound):
            harness.driver.get(names[0])
        assert [v.name for v in harness.volumes.list()] == names[1:]
        assert names[0] not in {v.name for v in harness.driver.list()}

    # -- remove ----------------------------------------------------------------

    def test_remove_of_a_missing_volume_is_not_found(self, harness: Harness) -> None:
        name = new_name()
        with pytest.raises(NotFound):
            harness.volumes.remove(name)
        harness.volumes.remove(name, force=True)  # force: missing is no error
        with pytest.raises(NotFound):
            harness.driver.remove(name, {})
        with pytest.raises(NotFound):
            harness.driver.get(name)

    def test_remove_of_a_mounted_volume_is_refused(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name, mount_id = new_name(), new_mount_id()
        harness.create(name, volume_options)
        path = harness.volumes.mount(name, mount_id)
        (path / "kept").write_text("still here")
        with pytest.raises(InUse):
            harness.volumes.remove(name)
        assert harness.calls.count("remove") == 0
        assert harness.calls.count("unmount") == 0
        assert harness.volumes.get(name).mountpoint == str(path)
        assert (path / "kept").read_text() == "still here"
        harness.volumes.unmount(name, mount_id)
        harness.volumes.remove(name)
        assert harness.calls.count("remove", name) == 1

    def test_remove_deletes_the_data_or_keeps_it_as_declared(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name = new_name()
        harness.create(name, volume_options)
        path = harness.volumes.mount(name, "writer")
        (path / "old").write_text("from the first volume")
        harness.volumes.unmount(name, "writer")
        harness.volumes.remove(name)
        harness.create(name, volume_options)
        path = harness.volumes.mount(name, "reader")
        deletes = self.remove_deletes_data
        if deletes is None:
            deletes = harness.driver.removes_data
        assert (path / "old").exists() is not deletes

    # -- mount -----------------------------------------------------------------

    def test_mount_gives_a_writable_directory(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name = new_name()
        harness.create(name, volume_options)
        path = harness.volumes.mount(name, new_mount_id())
        assert path.is_absolute() and path.is_dir()
        assert os.access(path, os.W_OK)
        (path / "sub").mkdir()
        (path / "sub" / "f").write_bytes(b"\x00data\xff")
        assert (path / "sub" / "f").read_bytes() == b"\x00data\xff"
        assert harness.volumes.get(name).mountpoint == str(path)
        assert harness.volumes.path(name) == path

    def test_data_survives_unmount_and_mount(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name, content = new_name(), secrets.token_hex(16)
        harness.create(name, volume_options)
        first = new_mount_id()
        (harness.volumes.mount(name, first) / "f").write_text(content)
        harness.volumes.unmount(name, first)
        assert harness.volumes.path(name) is None
        again = harness.volumes.mount(name, new_mount_id()) / "f"
        assert again.exists() is self.keeps_data_unmounted
        if self.keeps_data_unmounted:
            assert again.read_text() == content

    def test_data_survives_a_restart(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name, content = new_name(), secrets.token_hex(16)
        harness.create(name, volume_options, owner="conformance")
        before = harness.volumes.get(name)
        mount_id = new_mount_id()
        (harness.volumes.mount(name, mount_id) / "f").write_text(content)
        harness.volumes.unmount(name, mount_id)
        harness.restart()
        after = harness.volumes.get(name)
        assert (after.options, after.labels, after.created_at) == (
            before.options,
            before.labels,
            before.created_at,
        )
        assert harness.driver.get(name).name == name
        again = harness.volumes.mount(name, new_mount_id()) / "f"
        assert again.exists() is self.keeps_data_unmounted
        if self.keeps_data_unmounted:
            assert again.read_text() == content

    def test_mounts_are_counted_per_volume_and_id(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name, a, b = new_name(), new_mount_id(), new_mount_id()
        harness.create(name, volume_options)
        path = harness.volumes.mount(name, a)
        assert harness.volumes.mount(name, a) == path  # the same id twice (docker cp)
        assert harness.volumes.mount(name, b) == path
        assert harness.calls.count("mount", name) == 1
        for mount_id in (a, a):
            harness.volumes.unmount(name, mount_id)
            assert harness.calls.count("unmount", name) == 0
            assert (path / ".").is_dir()
        (path / "f").write_text("b still uses it")
        harness.volumes.unmount(name, b)
        assert harness.calls.count("unmount", name) == 1
        assert harness.volumes.get(name).refs == {}
        assert harness.volumes.path(name) is None

    def test_mounts_of_different_volumes_are_counted_apart(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        first, second, user = new_name(), new_name(), new_mount_id()
        harness.create(first, volume_options)
        harness.create(second, volume_options)
        one = harness.volumes.mount(first, user)
        two = harness.volumes.mount(second, user)  # one container, two volumes
        assert one != two
        assert harness.calls.count("mount", first) == harness.calls.count("mount", second) == 1
        (one / "f").write_text("first")
        (two / "f").write_text("second")
        harness.volumes.unmount(first, user)
        assert harness.calls.count("unmount", first) == 1
        assert harness.calls.count("unmount", second) == 0
        assert (two / "f").read_text() == "second"
        harness.volumes.unmount(second, user)
        assert harness.calls.count("unmount", second) == 1

    def test_concurrent_users_share_one_driver_mount(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        """Containers starting at once: one driver mount, one unmount, never two calls at once."""
        name = new_name()
        harness.create(name, volume_options)
        users = [new_mount_id() for _ in range(8)]
        with ThreadPoolExecutor(max_workers=len(users)) as pool:
            paths = set(pool.map(lambda user: harness.volumes.mount(name, user), users))
            assert len(paths) == 1
            assert harness.calls.count("mount", name) == 1
            list(pool.map(lambda user: harness.volumes.unmount(name, user), users))
        assert harness.calls.count("unmount", name) == 1
        assert harness.calls.overlaps == []
        assert harness.volumes.get(name).refs == {}

    def test_unmount_of_an_unknown_id_is_harmless(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        name, user = new_name(), new_mount_id()
        harness.create(name, volume_options)
        harness.volumes.unmount(name, new_mount_id())  # never mounted at all
        path = harness.volumes.mount(name, user)
        harness.volumes.unmount(name, new_mount_id())  # mounted, but by someone else
        assert harness.calls.count("unmount") == 0
        assert harness.volumes.get(name).refs == {user: 1}
        (path / "f").write_text("still mounted")
        harness.volumes.unmount(name, user)
        assert harness.calls.count("unmount", name) == 1

    def test_mount_after_a_crash_in_the_service(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        """A runtime that dies while a volume is mounted: the next one carries on."""
        name, old, new = new_name(), new_mount_id(), new_mount_id()
        harness.create(name, volume_options)
        path = harness.volumes.mount(name, old)
        (path / "f").write_text("before the crash")
        harness.restart()  # no unmount: the references and the mount outlive the process
        assert harness.volumes.mount(name, new) == path
        assert (path / "f").read_text() == "before the crash"
        harness.volumes.unmount(name, new)
        assert harness.calls.count("unmount") == 0
        harness.volumes.unmount(name, old)
        assert harness.calls.count("unmount", name) == 1

    def test_driver_mount_again_after_a_crash_returns_the_same_path(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        """A core that lost its references calls mount twice without unmount."""
        name = new_name()
        opts = harness.driver_opts(volume_options)
        harness.driver.create(name, opts)
        first = harness.driver.mount(name, new_mount_id(), opts)
        (first / "f").write_text("written before the crash")
        second = harness.driver.mount(name, new_mount_id(), opts)
        assert second == first
        assert (second / "f").read_text() == "written before the crash"
        harness.driver.unmount(name, new_mount_id(), opts)
        # one unmount released it: mounting and removing work as on a fresh volume
        third = harness.driver.mount(name, new_mount_id(), opts)
        assert (third / "f").exists() is self.keeps_data_unmounted
        harness.driver.unmount(name, new_mount_id(), opts)
        harness.driver.remove(name, opts)
        with pytest.raises(NotFound):
            harness.driver.get(name)

    # -- bad input -------------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda n: repr(n)[:24])
    def test_bad_names_are_refused_and_change_nothing(
        self, harness: Harness, volume_options: dict[str, str], bad: str
    ) -> None:
        before = harness.on_disk()
        with pytest.raises(InvalidArgument):
            harness.volumes.create(bad, harness.driver_name, volume_options)
        for call in (
            harness.volumes.get,
            harness.volumes.remove,
            functools.partial(harness.volumes.mount, mount_id=new_mount_id()),
            functools.partial(harness.volumes.unmount, mount_id=new_mount_id()),
        ):
            with pytest.raises(InvalidArgument):
                call(bad)
        assert harness.calls.changing() == []
        assert harness.volumes.list() == []
        assert harness.on_disk() == before

    def test_unknown_options_are_refused_before_the_driver_is_called(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        before = harness.on_disk()
        bogus = {**volume_options, "no-such-option": "1"}
        with pytest.raises(InvalidArgument, match="no-such-option"):
            harness.volumes.create(new_name(), harness.driver_name, bogus)
        assert harness.calls.changing() == []
        assert harness.volumes.list() == []
        assert harness.on_disk() == before

    def test_missing_required_options_are_refused_before_the_driver_is_called(
        self, harness: Harness, volume_options: dict[str, str]
    ) -> None:
        required = [o.name for o in harness.driver.options if o.required]
        if not required:
            # nothing is required, so a volume needs no options at all
            harness.volumes.create(new_name(), harness.driver_name, {})
            assert harness.calls.count("create") == 1
            return
        before = harness.on_disk()
        for option in required:
            lacking = {k: v for k, v in volume_options.items() if k != option}
            with pytest.raises(InvalidArgument, match=option):
                harness.volumes.create(new_name(), harness.driver_name, lacking)
        assert harness.calls.changing() == []
        assert harness.volumes.list() == []
        assert harness.on_disk() == before
