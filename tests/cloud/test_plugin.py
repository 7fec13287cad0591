"""The cloud plugin: drivers only with their SDK, install hints, ``cargohold volume sync``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import NotFound, Runtime

from .conftest import Remote

CARGOHOLD = str(Path(sys.executable).with_name("cargohold"))


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CARGOHOLD, "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )


def test_drivers_are_offered_with_their_sdk_and_name_their_extra_without(
    tmp_path: Path, monkeypatch: Any
) -> None:
    with Runtime(tmp_path / "state") as rt:
        assert {"s3", "azurefile", "gcs"} <= set(rt.drivers.names())
        assert rt.drivers.get("s3").scope == "global"
    for driver, sdk, extra in (
        ("s3", "boto3", "s3"),
        ("azurefile", "azure.storage.fileshare", "azure"),
        ("gcs", "google.cloud.storage", "gcs"),
    ):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, sdk, None)  # as if the SDK were not installed
            with Runtime(tmp_path / f"state-{driver}") as rt, pytest.raises(NotFound) as caught:
                rt.drivers.get(driver)
            assert f"pip install 'cargohold[{extra}]'" in str(caught.value)


def test_volume_sync_flushes_and_fails_on_conflicts(
    s3_remote: Remote, prefix: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with Runtime(state) as rt:
        rt.volumes.create("synced", "s3", s3_remote.opts(prefix))
        path = rt.volumes.mount("synced", "m1")
        (path / "a.txt").write_bytes(b"first")
        rt.volumes.unmount("synced", "m1")
    done = cli(state, "volume", "sync", "synced", "--wait")
    assert done.returncode == 0, done.stderr
    assert s3_remote.get(f"{prefix}/a.txt") == b"first"
    with Runtime(state) as rt:
        path = rt.volumes.mount("synced", "m2")
        (path / "a.txt").write_bytes(b"mine")
        s3_remote.put(f"{prefix}/a.txt", b"theirs")
        rt.volumes.unmount("synced", "m2")
    conflicted = cli(state, "volume", "sync", "synced", "--wait")
    assert conflicted.returncode == 1, conflicted.stderr
    assert "conflict: a.txt" in conflicted.stderr and "a.conflict-" in conflicted.stderr
    assert s3_remote.get(f"{prefix}/a.txt") == b"theirs"
    # reported once: the next sync has nothing new to say
    again = cli(state, "volume", "sync", "synced", "--wait")
    assert again.returncode == 0, again.stderr
    inspect = cli(state, "volume", "inspect", "synced")
    assert '"conflicts"' in inspect.stdout and "a.txt" in inspect.stdout
    cli(state, "volume", "rm", "synced")


def test_volume_sync_refuses_other_drivers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert cli(state, "volume", "create", "plain").returncode == 0
    refused = cli(state, "volume", "sync", "plain")
    assert refused.returncode == 1 and "no write-back" in refused.stderr
    cli(state, "volume", "rm", "plain")
