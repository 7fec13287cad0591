"""Arbitrary JSON at every endpoint: the server answers, stays up and stays consistent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cargohold.plugins.docker import protocol

from .conftest import Served

MOUNT_IDS = ["a" * 64, "b" * 64, "c"]
NAMES = ["v1", "v2", "vol.3", "../v1", "/etc", "..", ".", "v1/../v2", "a", "v1\x00", "V1 "]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Keys the local driver would turn into real mounts are left out: the fuzz is about the
# server, and a random tmpfs or bind mount would outlive the test.
option_keys = st.sampled_from(["o", "size", "bogus"]) | st.text(max_size=6).filter(
    lambda k: k not in ("type", "device")
)
options = st.none() | st.dictionaries(option_keys, st.text(max_size=10) | json_values, max_size=3)
requests = st.fixed_dictionaries(
    {},
    optional={
        "Name": st.sampled_from(NAMES) | st.text(max_size=12) | json_values,
        "Opts": options | json_values,
        "ID": st.sampled_from(MOUNT_IDS) | st.text(max_size=70) | json_values,
    },
)
# Mostly well-formed calls, so volumes really get created, mounted and removed.
well_formed = st.fixed_dictionaries(
    {"Name": st.sampled_from(NAMES[:3])},
    optional={
        "Opts": st.none() | st.just({}) | options,
        "ID": st.sampled_from(MOUNT_IDS),
    },
)
bodies = st.one_of(
    well_formed.map(lambda r: json.dumps(r).encode()),
    well_formed.map(lambda r: json.dumps(r).encode()),
    requests.map(lambda r: json.dumps(r).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)
endpoints = st.sampled_from([*protocol.METHODS, "VolumeDriver.Nope", "volumedriver.get", ""])


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=st.lists(st.tuples(endpoints, bodies), min_size=1, max_size=8))
def test_arbitrary_requests_keep_the_server_up_and_consistent(
    served: Served, calls: list[tuple[str, bytes]]
) -> None:
    outside = _outside_driver_area(served)
    for endpoint, body in calls:
        status, answer = served.client.raw(f"/{endpoint}", body)
        assert isinstance(answer, dict)
        event(f"{endpoint or '/'} -> {status}")
        assert status in (200, 400, 404, 405, 409, 413), (endpoint, body, status, answer)
        if status != 200:
            assert answer.get("Err"), (endpoint, body, answer)
        _check_consistent(served)
    assert _outside_driver_area(served) == outside, "a request touched files outside the driver"
    assert served.client.call("Plugin.Activate") == {"Implements": ["VolumeDriver"]}


def _check_consistent(served: Served) -> None:
    store = served.runtime.store
    listed = served.client.call("VolumeDriver.List", {})["Volumes"]
    records = store.list()
    assert [v["Name"] for v in listed] == [r.name for r in records]
    on_disk = (
        sorted(p.name for p in served.driver_root.iterdir()) if served.driver_root.exists() else []
    )
    assert on_disk == [r.name for r in records], "driver data and the store disagree"
    for record in records:
        assert all(count > 0 for count in record.refs.values()), record
        assert (record.mountpoint is not None) == bool(record.refs), record


def _outside_driver_area(served: Served) -> dict[str, Any]:
    """Every file under the test's directory except the driver's data, locks and database."""
    root = served.runtime.state_dir.parent
    seen: dict[str, Any] = {}
    for directory, dirs, files in os.walk(root):
        path = Path(directory)
        if path == served.driver_root or path.name == "locks":
            dirs.clear()
            continue
        for entry in files:
            if entry.startswith("state.db"):
                continue
            info = (path / entry).lstat()
            seen[str(path / entry)] = (info.st_mode, info.st_size)
        seen.update({str(path / d): "dir" for d in dirs})
    return seen
