"""Run cargohold's driver conformance suite against the memo driver: ``pytest tests``."""

from cargohold_memo import MemoDriver

from cargohold.core.testing import VolumeDriverConformance


class TestMemoDriver(VolumeDriverConformance):
    driver_class = MemoDriver
