"""cargohold's own drivers pass the conformance suite it ships to driver authors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from cargohold.core.testing.volume_drivers import VolumeDriverConformance
from cargohold.drivers.bind import BindDriver
from cargohold.drivers.local import LocalDriver

pytest_plugins = ["pytester"]


class TestLocalDriver(VolumeDriverConformance):
    driver_class = LocalDriver


@pytest.mark.root
class TestLocalTmpfsDriver(VolumeDriverConformance):
    """A typed local volume: a real tmpfs mounted on first mount, unmounted on the last."""

    driver_class = LocalDriver
    create_options: ClassVar[Mapping[str, str]] = {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": "size=8m",
    }
    keeps_data_unmounted = False  # as Docker's: a tmpfs volume's data goes with the mount


@pytest.mark.root
class TestBindDriver(VolumeDriverConformance):
    driver_class = BindDriver  # its data outlives the volume: BindDriver.removes_data

    @pytest.fixture
    def volume_options(self, tmp_path: Path) -> dict[str, str]:
        source = tmp_path / "source"
        source.mkdir()
        return {"source": str(source)}


BROKEN_DRIVER = '''
import os
import secrets
import shutil

from cargohold.core import DriverVolume, NotFound, VolumeDriver
from cargohold.core.testing.volume_drivers import VolumeDriverConformance


class Sloppy(VolumeDriver):
    """Three classic plugin bugs: remove of a missing volume succeeds, a mount after a
    crash gives a new, empty directory, and every mount starts empty."""

    name = "sloppy"

    def create(self, name, opts):
        (self.root / name).mkdir(exist_ok=True)

    def remove(self, name, opts):
        shutil.rmtree(self.root / name, ignore_errors=True)

    def mount(self, name, mount_id, opts):
        path = self.root / name / secrets.token_hex(4)
        path.mkdir()
        return path

    def unmount(self, name, mount_id, opts):
        pass

    def get(self, name):
        if not (self.root / name).exists():
            raise NotFound(name)
        return DriverVolume(name)

    def list(self):
        return [DriverVolume(n) for n in os.listdir(self.root)]


class TestSloppy(VolumeDriverConformance):
    driver_class = Sloppy
'''


def test_the_suite_fails_a_broken_driver(pytester: pytest.Pytester) -> None:
    """The suite is only worth shipping if it catches the bugs plugins really have."""
    pytester.makepyfile(test_sloppy=BROKEN_DRIVER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-rf")
    failed = {
        line.split("::")[-1].split(" ")[0]
        for line in result.outlines
        if line.startswith("FAILED test_sloppy.py::TestSloppy::")
    }
    assert failed == {
        "test_remove_of_a_missing_volume_is_not_found",
        "test_data_survives_unmount_and_mount",
        "test_data_survives_a_restart",
        "test_driver_mount_again_after_a_crash_returns_the_same_path",
    }, result.outlines
    assert result.ret == pytest.ExitCode.TESTS_FAILED
