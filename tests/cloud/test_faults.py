"""Bad input and faults: clear errors naming the volume and the fix, retries, nothing lost."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import CargoholdError, InvalidArgument, NotFound, Runtime, Unavailable

from .conftest import Remote, free_port, proxied_opts, s3_client, wait_for_port
from .test_sync import written_back

# -- credentials ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authenticating_moto() -> Iterator[tuple[str, str, str]]:
    """A moto server that checks credentials (after the few set-up calls), and a real key."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
        )  # fmt: skip
        iam.create_user(UserName="cargohold")
        key = iam.create_access_key(UserName="cargohold")["AccessKey"]
        allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
        iam.put_user_policy(UserName="cargohold", PolicyName="s3", PolicyDocument=policy)
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_s3_wrong_credentials_are_refused_clearly(
    authenticating_moto: tuple[str, str, str], cloud_runtime: Runtime, monkeypatch: Any
) -> None:
    endpoint, key_id, secret = authenticating_moto
    s3_client(endpoint, key_id, secret).create_bucket(Bucket="authed")
    monkeypatch.setenv("CH_WRONG_KEY", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("CH_WRONG_SECRET", "definitely-not-the-secret-0123456789")
    opts = {
        "bucket": "authed",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_id": "env:CH_WRONG_KEY",
        "secret_access_key": "env:CH_WRONG_SECRET",
    }
    with pytest.raises(InvalidArgument) as caught:
        cloud_runtime.volumes.create("locked", "s3", opts)
    message = str(caught.value)
    assert "volume locked" in message and "credentials" in message
    assert "definitely-not-the-secret" not in message
    assert [v.name for v in cloud_runtime.volumes.list()] == []
    # the right key works
    monkeypatch.setenv("CH_WRONG_KEY", key_id)
    monkeypatch.setenv("CH_WRONG_SECRET", secret)
    cloud_runtime.volumes.create("open", "s3", opts)
    cloud_runtime.volumes.remove("open")


def test_azure_wrong_key_is_refused_clearly(
    azure_remote: Remote, azure_server: Any, cloud_runtime: Runtime, monkeypatch: Any
) -> None:
    wrong = azure_server.connection_string_for("d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRlc3Rz")
    monkeypatch.setenv("CH_WRONG_CS", wrong)
    opts = azure_remote.opts("wrongkey", connection_string="env:CH_WRONG_CS")
    with pytest.raises(InvalidArgument) as caught:
        cloud_runtime.volumes.create("locked", "azurefile", opts)
    assert "volume locked" in str(caught.value) and "credentials" in str(caught.value)
    assert "d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRlc3Rz" not in str(caught.value)


def test_gcs_unusable_credentials_file_is_refused_clearly(
    gcs_remote: Remote, cloud_runtime: Runtime, tmp_path: Path
) -> None:
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account", "private_key": "not a key"}')
    opts = gcs_remote.opts("badkey", credentials_file=f"file:{key}")
    with pytest.raises(CargoholdError) as caught:
        cloud_runtime.volumes.create("locked", "gcs", opts)
    assert "volume locked" in str(caught.value) and "credentials" in str(caught.value)


# -- missing containers, limits ------------------------------------------------------------


def test_a_missing_bucket_or_share_is_not_found_with_the_fix(
    remote: Remote, cloud_runtime: Runtime
) -> None:
    where = {"azurefile": "share"}.get(remote.driver, "bucket")
    opts = {**remote.opts("p"), where: f"missing-{secrets.token_hex(4)}"}
    with pytest.raises(NotFound) as caught:
        cloud_runtime.volumes.create("nowhere", remote.driver, opts)
    assert "volume nowhere" in str(caught.value) and "create=true" in str(caught.value)
    # with create=true it is made, and removing the volume leaves it (no delete_remote)
    cloud_runtime.volumes.create("made", remote.driver, {**opts, "create": "true"})
    path = cloud_runtime.volumes.mount("made", "m")
    (path / "f").write_bytes(b"in a new container")
    cloud_runtime.volumes.unmount("made", "m")
    written_back(cloud_runtime, "made")
    cloud_runtime.volumes.remove("made")


def test_a_prefix_over_cache_limit_is_refused_at_mount(
    remote: Remote, prefix: str, cloud_runtime: Runtime
) -> None:
    remote.put(f"{prefix}/a.bin", b"a" * 700_000)
    remote.put(f"{prefix}/b.bin", b"b" * 700_000)
    cloud_runtime.volumes.create("capped", remote.driver, remote.opts(prefix, cache_limit="1m"))
    with pytest.raises(InvalidArgument) as caught:
        cloud_runtime.volumes.mount("capped", "m")
    message = str(caught.value)
    assert "volume capped" in message and "1.3 MiB" in message and "cache_limit" in message
    assert cloud_runtime.volumes.get("capped").refs == {}


@pytest.mark.root
def test_a_full_cache_disk_is_refused_and_leaves_nothing_partial(
    s3_remote: Remote, prefix: str, tmp_path: Path
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        s3_remote.put(f"{prefix}/huge.bin", secrets.token_bytes(6 * 1024 * 1024))
        with Runtime(small / "state") as rt:
            rt.volumes.create("tight", "s3", s3_remote.opts(prefix))
            with pytest.raises(Unavailable) as caught:
                rt.volumes.mount("tight", "m")
            assert "volume tight" in str(caught.value) and "free" in str(caught.value)
            data = small / "state" / "drivers" / "s3" / "tight" / "data"
            assert list(data.iterdir()) == []
            assert list((data.parent / "tmp").iterdir()) == []
            rt.volumes.remove("tight")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


# -- a flaky server ------------------------------------------------------------------------


def test_503s_and_dropped_connections_mid_transfer_are_retried(
    remote: Remote, prefix: str, proxy: Any, cloud_runtime: Runtime
) -> None:
    big = secrets.token_bytes(20 * 1024 * 1024)
    remote.put(f"{prefix}/seed.bin", big)
    vols = cloud_runtime.volumes
    vols.create("flaky", remote.driver, proxied_opts(remote, proxy, prefix))
    # fetch: two answers cut off midway, then two 503s
    proxy.drop_next(2, after_bytes=64 * 1024, match=lambda method, target: method == "GET")
    proxy.fail_next(2, status=503, match=lambda method, target: method == "GET")
    path = vols.mount("flaky", "m1")
    assert (path / "seed.bin").read_bytes() == big
    (path / "up.bin").write_bytes(big[::-1])
    for i in range(30):
        (path / f"s{i}.txt").write_bytes(f"small {i}".encode())
    # write-back: 500s and 503s on uploads, then a dropped answer (the upload happened)
    proxy.fail_next(2, status=500, match=lambda method, target: method in ("PUT", "POST"))
    proxy.fail_next(2, status=503, match=lambda method, target: method in ("PUT", "POST"))
    proxy.drop_next(1, after_bytes=0, match=lambda method, target: method in ("PUT", "POST"))
    vols.unmount("flaky", "m1")
    written_back(cloud_runtime, "flaky")
    assert proxy.pending == 0, "every fault was served"
    assert remote.get(f"{prefix}/up.bin") == big[::-1]
    for i in range(30):
        assert remote.get(f"{prefix}/s{i}.txt") == f"small {i}".encode()
    status = vols.get("flaky").status
    assert status["conflicts"] == [], status  # a retried upload is not a conflict


def test_a_server_that_stays_down_keeps_the_write_back_pending(
    s3_remote: Remote, prefix: str, tmp_path: Path
) -> None:
    from cargohold.drivers.cloud.base import CloudDriver
    from cargohold.drivers.cloud.workers import resolve_options

    from .fault_proxy import FaultProxy

    port = int(s3_remote.endpoint.rpartition(":")[2])
    with FaultProxy("127.0.0.1", port) as proxy, Runtime(tmp_path / "state") as rt:
        rt.volumes.create("down", "s3", proxied_opts(s3_remote, proxy, prefix))
        (rt.volumes.mount("down", "m") / "precious.txt").write_bytes(b"do not lose me")
        proxy.fail_next(10_000, status=503)
        rt.volumes.unmount("down", "m")
        drv = rt.drivers.get("s3")
        assert isinstance(drv, CloudDriver)
        opts = resolve_options(drv, rt.volumes.get("down").options, rt.hook)
        assert opts is not None
        with pytest.raises(Unavailable) as caught:
            drv.sync("down", opts)
        assert "volume down" in str(caught.value) and "nothing was lost" in str(caught.value)
        status = rt.volumes.get("down").status
        assert status["pending_files"] == 1 and status["pending_bytes"] == 14, status
        assert "503" in status["last_error"]
        proxy.reset()
        report = drv.sync("down", opts)
        assert report is not None and report.conflicts == []
        assert s3_remote.get(f"{prefix}/precious.txt") == b"do not lose me"
        assert rt.volumes.get("down").status["pending_files"] == 0
