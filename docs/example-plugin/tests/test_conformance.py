"""Run cargohold's driver conformance suite against the memo driver: ``pytest tests``."""

from cargohold.core.conformance import VolumeDriverConformance
from cargohold_memo import MemoDriver


class TestMemoDriver(VolumeDriverConformance):
    driver_class = MemoDriver
