"""Fixtures the benchmarks share."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from ..cloud.conftest import free_port, s3_client, wait_for_port

#: the bucket `moto_process` makes
BUCKET = "bench"


@pytest.fixture(scope="module")
def moto_process() -> Iterator[str]:
    """A moto S3 server with `BUCKET`, in a process of its own: it never takes the GIL
    from the code being timed, as the tests' threaded one would."""
    pytest.importorskip("moto.server", reason="pip install 'moto[server]'")
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
