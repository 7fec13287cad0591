"""SIGKILL of ``cargohold serve`` in the middle of a write-back: a restart completes it.

The plugin process is killed while a large file is half uploaded (a multipart
upload, a resumable session, Azure ranges), with the proxy slowing every
request so that the kill lands mid-transfer. Nothing partial may be visible
remotely after the kill; after the restart every byte arrives.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..docker.conftest import PluginClient, ServeProcess, unique_name
from .conftest import Remote, proxied_opts


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="chc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _wait(what: str, check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_during_write_back_then_restart_completes_it(
    remote: Remote, prefix: str, proxy: Any, short_dir: Path
) -> None:
    state = short_dir / "state"
    state.mkdir()
    name = unique_name("chcrash")
    opts = proxied_opts(remote, proxy, prefix, concurrency="2")  # before the server: its env
    serve = ServeProcess([remote.driver], state, short_dir / "plugins", name)
    serve.start()
    try:
        client = PluginClient(serve.socket)
        client.call("VolumeDriver.Create", {"Name": "crashy", "Opts": opts})
        mounted = Path(
            client.call("VolumeDriver.Mount", {"Name": "crashy", "ID": "c1"})["Mountpoint"]
        )
        big = secrets.token_bytes(40 * 1024 * 1024)
        (mounted / "big.bin").write_bytes(big)
        small = {f"notes/n{i}.txt": f"note {i}\n".encode() for i in range(20)}
        (mounted / "notes").mkdir()
        for path, data in small.items():
            (mounted / path).write_bytes(data)
        proxy.delay_next(100_000, seconds=0.15)  # every request slow: the kill lands mid-upload
        client.call("VolumeDriver.Unmount", {"Name": "crashy", "ID": "c1"})
        client.close()
        uploads = state / "drivers" / remote.driver / "crashy" / "journal" / "uploads"
        _wait("the chunked upload to start", lambda: any(uploads.glob("*.json")))
        if remote.driver != "gcs":  # GCS's session URL skips the slow proxy: no time to lose
            time.sleep(0.5)  # a few chunks in: through the proxy each takes 0.15 s or more
        serve.kill()  # SIGKILL
        checkpoint = json.loads(next(uploads.glob("*.json")).read_text())
        assert checkpoint, "the chunked upload had started"
        assert remote.get(f"{prefix}/big.bin") is None, "a partial object is visible"

        proxy.reset()
        serve = ServeProcess([remote.driver], state, short_dir / "plugins", name)
        serve.start()
        client = PluginClient(serve.socket)
        # the restarted plugin resumes by itself; any request builds the driver
        client.call("VolumeDriver.Get", {"Name": "crashy"})
        journal = state / "drivers" / remote.driver / "crashy" / "journal" / "ops.json"
        _wait("the resumed write-back", lambda: not journal.exists())
        got = remote.get(f"{prefix}/big.bin")
        assert got is not None and hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
        for path, data in small.items():
            assert remote.get(f"{prefix}/{path}") == data
        status = client.call("VolumeDriver.Get", {"Name": "crashy"})["Volume"]["Status"]
        assert status["pending_files"] == 0 and status["conflicts"] == [], status
        client.call("VolumeDriver.Remove", {"Name": "crashy"})
        client.close()
    finally:
        serve.stop()
