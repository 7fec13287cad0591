"""Both arrays pass the array suite, and both drivers pass the volume-driver suite."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from cargohold.core.testing.arrays import BlockArrayConformance
from cargohold.core.testing.volume_drivers import VolumeDriverConformance
from cargohold.drivers.arrays.btrfs import BtrfsArray, BtrfsDriver
from cargohold.drivers.arrays.loop import LoopArray, LoopDriver

from .conftest import missing_tools_reason

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _tools(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = missing_tools_reason("mkfs.ext4", "mkfs.btrfs", "e2fsck")
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("CARGOHOLD_ARRAY_BTRFS_IMAGE_SIZE", "1g")


class TestLoopArray(BlockArrayConformance):
    array_class = LoopArray


class TestLoopArrayOnReflinkXfs(BlockArrayConformance):
    array_class = LoopArray

    @pytest.fixture
    def array_settings(self, xfs_pool: Path) -> dict[str, str]:
        return {"pool": str(xfs_pool)}


class TestBtrfsArray(BlockArrayConformance):
    array_class = BtrfsArray
    settings: ClassVar[Mapping[str, str]] = {"image_size": "1g"}


class TestLoopDriver(VolumeDriverConformance):
    driver_class = LoopDriver
    create_options: ClassVar[Mapping[str, str]] = {"size": "32m"}


class TestLoopDriverXfs(VolumeDriverConformance):
    driver_class = LoopDriver
    create_options: ClassVar[Mapping[str, str]] = {"size": "320m", "fs": "xfs"}


class TestBtrfsDriver(VolumeDriverConformance):
    driver_class = BtrfsDriver
    create_options: ClassVar[Mapping[str, str]] = {"size": "32m"}
