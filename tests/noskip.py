"""The skip policy of this test suite, as a pytest plugin (re-exported by conftest.py).

Locally a test may skip, with a reason. ``CARGOHOLD_NO_SKIP=1`` (set by
``.ci/run``) turns every skip into a failure: in CI nothing that needs root,
the kernel's mounts, the Docker engine or an emulator may silently not run.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

NO_SKIP_ENV = "CARGOHOLD_NO_SKIP"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(NO_SKIP_ENV):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under {NO_SKIP_ENV}=1 (CI must run it): {reason}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.root`` tests skip, with the reason, when not run as root."""
    for item in items:
        if item.get_closest_marker("root") and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root for kernel mounts"))
