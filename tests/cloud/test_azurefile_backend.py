"""The Azure Files backend against the local Azure Files server, through the official SDK."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .azure_files_server import AzureFilesServer
from .azure_fixtures import running_azure_server
from .fault_proxy import FaultProxy

fs = pytest.importorskip("azure.storage.fileshare")
from azure.core.exceptions import HttpResponseError  # noqa: E402 - after the SDK check

from cargohold.core import InvalidArgument  # noqa: E402
from cargohold.drivers.cloud import azurefile  # noqa: E402
from cargohold.drivers.cloud.backend import (  # noqa: E402
    ABSENT,
    ANY,
    AuthFailed,
    ContainerNotFound,
    Expect,
    NullCheckpoint,
    PreconditionFailed,
    RemoteNotFound,
    Transient,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[AzureFilesServer]:
    yield from running_azure_server()


@pytest.fixture
def backend(server: AzureFilesServer) -> Iterator[azurefile.AzureFileBackend]:
    server.reset()
    b = azurefile.open_backend(
        "vol",
        {"share": "data", "directory": "vols/v1", "connection_string": server.connection_string},
    )
    b.make_container()
    try:
        yield b
    finally:
        b.close()
        server.reset()


@pytest.fixture
def share(server: AzureFilesServer, backend: azurefile.AzureFileBackend) -> fs.ShareClient:
    """Another client of the same share: 'someone else' changing things remotely."""
    return fs.ShareServiceClient.from_connection_string(server.connection_string).get_share_client(
        "data"
    )


class MemoryCheckpoint:
    """A checkpoint in memory that can simulate a crash after some saves."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.state: dict[str, Any] | None = None
        self.saves = 0
        self.crash_after = crash_after

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
        self.saves += 1
        if self.crash_after is not None and self.saves > self.crash_after:
            raise KeyboardInterrupt("simulated crash")


def put(
    backend: azurefile.AzureFileBackend,
    tmp_path: Path,
    path: str,
    data: bytes,
    expect: Expect = ANY,
    **kwargs: Any,
) -> str:
    src = tmp_path / "src"
    src.write_bytes(data)
    checkpoint = kwargs.pop("checkpoint", NullCheckpoint())
    return backend.put(
        path,
        src,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        expect=expect,
        checkpoint=checkpoint,
        **kwargs,
    )


def read(backend: azurefile.AzureFileBackend, path: str, **kwargs: Any) -> bytes:
    return b"".join(backend.get(path, **kwargs))


def test_put_list_head_get(backend: azurefile.AzureFileBackend, tmp_path: Path) -> None:
    v1 = put(backend, tmp_path, "a.txt", b"alpha", ABSENT)
    put(backend, tmp_path, "deep/er/b.txt", b"beta", ABSENT)  # parents are created
    backend.make_dir("empty/dir")
    entries = {e.path: e for e in backend.list()}
    assert set(entries) == {"a.txt", "deep", "deep/er", "deep/er/b.txt", "empty", "empty/dir"}
    assert entries["a.txt"].version == v1 and entries["a.txt"].size == 5
    assert entries["deep/er"].is_dir and not entries["deep/er/b.txt"].is_dir
    head = backend.head("a.txt")
    assert head is not None and head.sha256 == hashlib.sha256(b"alpha").hexdigest()
    assert head.version == v1
    head_dir = backend.head("empty/dir")
    assert head_dir is not None and head_dir.is_dir
    assert backend.head("nope") is None
    assert read(backend, "a.txt") == b"alpha"
    assert read(backend, "a.txt", start=1, end=3) == b"lp"
    assert read(backend, "a.txt", start=2) == b"pha"
    assert read(backend, "a.txt", version=v1) == b"alpha"
    with pytest.raises(RemoteNotFound):
        read(backend, "nope")
    assert "vols/v1" in backend.describe() and "AccountKey" not in backend.describe()


def test_empty_root_and_empty_file(server: AzureFilesServer, tmp_path: Path) -> None:
    server.reset()
    b = azurefile.open_backend(
        "v",
        {"share": "data", "directory": "not/yet", "connection_string": server.connection_string},
    )
    with pytest.raises(ContainerNotFound):
        b.check()
    b.make_container()
    b.make_container()  # idempotent
    b.check()
    assert list(b.list()) == []
    put(b, tmp_path, "zero", b"", ABSENT)
    assert read(b, "zero") == b""
    assert [e.size for e in b.list()] == [0]


def test_chunked_upload_in_parallel_and_ranged_reads(
    backend: azurefile.AzureFileBackend, tmp_path: Path
) -> None:
    data = os.urandom(50 * MiB + 123)
    progress: list[int] = []
    version = put(backend, tmp_path, "big.bin", data, ABSENT, parallel=4, progress=progress.append)
    assert sum(progress) == len(data)
    got = b"".join(
        read(backend, "big.bin", version=version, start=s, end=min(s + 8 * MiB, len(data)))
        for s in range(0, len(data), 8 * MiB)
    )
    assert got == data
    assert not any(e.path.startswith(".cargohold") for e in backend.list())


def test_overwrite_needs_the_current_version(
    backend: azurefile.AzureFileBackend, share: fs.ShareClient, tmp_path: Path
) -> None:
    v1 = put(backend, tmp_path, "f", b"one", ABSENT)
    with pytest.raises(PreconditionFailed):
        put(backend, tmp_path, "f", b"again", ABSENT)
    v2 = put(backend, tmp_path, "f", b"two", Expect(version=v1))
    assert v2 != v1 and read(backend, "f") == b"two"

    # someone else changes it: our overwrite from v2 must not land
    share.get_file_client("vols/v1/f").upload_file(b"theirs")
    with pytest.raises(PreconditionFailed):
        put(backend, tmp_path, "f", b"mine", Expect(version=v2))
    assert read(backend, "f") == b"theirs"
    props = share.get_file_client("vols/v1/f").get_file_properties()
    assert props.lease.state == "available"  # the lease was given back

    share.get_file_client("vols/v1/f").delete_file()
    with pytest.raises(RemoteNotFound):
        put(backend, tmp_path, "f", b"mine", Expect(version=v2))
    put(backend, tmp_path, "f", b"mine", ABSENT)


def test_lease_blocks_other_writers_while_uploading(
    backend: azurefile.AzureFileBackend, share: fs.ShareClient, tmp_path: Path
) -> None:
    v1 = put(backend, tmp_path, "f", b"old", ABSENT)
    other = share.get_file_client("vols/v1/f")
    refusals: list[str] = []

    class Spy(MemoryCheckpoint):
        def save(self, state: dict[str, Any]) -> None:
            super().save(state)
            if state.get("done"):  # mid-upload: the target must be leased by us
                try:
                    other.upload_range(b"X", offset=0, length=1)
                except HttpResponseError as err:
                    refusals.append(err.error_code or "")

    data = os.urandom(20 * MiB)
    put(backend, tmp_path, "f", data, Expect(version=v1), checkpoint=Spy())
    assert refusals and set(refusals) == {"LeaseIdMissing"}
    assert read(backend, "f") == data
    assert other.get_file_properties().lease.state == "available"


def test_crash_mid_upload_resumes_with_the_same_lease(
    server: AzureFilesServer,
    backend: azurefile.AzureFileBackend,
    share: fs.ShareClient,
    tmp_path: Path,
) -> None:
    v1 = put(backend, tmp_path, "f", b"old", ABSENT)
    data = os.urandom(40 * MiB)
    # saved: the ids, the first chunk; the process dies while saving the second of five
    checkpoint = MemoryCheckpoint(crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        put(backend, tmp_path, "f", data, Expect(version=v1), checkpoint=checkpoint)
    assert checkpoint.state is not None and len(checkpoint.state["done"]) == 2
    other = share.get_file_client("vols/v1/f")
    # an exception gives the lease back; a SIGKILL would leave it held: do as SIGKILL does
    assert other.get_file_properties().lease.state == "available"
    fs.ShareLeaseClient(other, lease_id=checkpoint.state["lease"]).acquire()
    assert read(backend, "f") == b"old"
    assert [e.path for e in backend.list()] == ["f"]  # the half-written upload is hidden

    checkpoint.crash_after = None
    before = server.service.requests
    put(backend, tmp_path, "f", data, Expect(version=v1), checkpoint=checkpoint)
    ranges = 2 * 3  # three chunks of 8 MiB left, two Put Range each
    assert server.service.requests - before < ranges + 8
    assert read(backend, "f") == data
    assert other.get_file_properties().lease.state == "available"


def test_make_dir(backend: azurefile.AzureFileBackend, tmp_path: Path) -> None:
    v = backend.make_dir("a/b/c")
    assert v and backend.make_dir("a/b/c")  # existing: fine
    put(backend, tmp_path, "a/file", b"x", ABSENT)
    with pytest.raises(PreconditionFailed):
        backend.make_dir("a/file")


def test_delete(backend: azurefile.AzureFileBackend, share: fs.ShareClient, tmp_path: Path) -> None:
    v1 = put(backend, tmp_path, "d/f", b"x", ABSENT)
    share.get_file_client("vols/v1/d/f").upload_file(b"changed")
    with pytest.raises(PreconditionFailed):
        backend.delete("d/f", expect=Expect(version=v1))
    assert read(backend, "d/f") == b"changed"
    with pytest.raises(PreconditionFailed):
        backend.delete("d", is_dir=True)  # not empty
    current = backend.head("d/f")
    assert current is not None
    backend.delete("d/f", expect=Expect(version=current.version))
    backend.delete("d/f", expect=Expect(version=current.version))  # already gone: fine
    backend.delete("d", is_dir=True)
    backend.delete("d", is_dir=True)
    assert list(backend.list()) == []


def test_delete_all_keeps_the_share_and_other_volumes(
    backend: azurefile.AzureFileBackend, share: fs.ShareClient, tmp_path: Path
) -> None:
    share.create_directory("vols/other")
    share.get_file_client("vols/other/keep").upload_file(b"k")
    put(backend, tmp_path, "x/y/z", b"1", ABSENT)
    put(backend, tmp_path, "top", b"2", ABSENT)
    share.get_file_client("vols/v1/top").acquire_lease()  # a stale lease does not stop it
    with pytest.raises(KeyboardInterrupt):  # and neither do crashed uploads' leftovers
        put(backend, tmp_path, "x/big", os.urandom(9 * MiB), checkpoint=MemoryCheckpoint(1))
    backend.delete_all()
    assert not share.get_directory_client("vols/v1").exists()
    assert share.get_file_client("vols/other/keep").download_file().readall() == b"k"


def test_version_pinned_reads(
    backend: azurefile.AzureFileBackend, share: fs.ShareClient, tmp_path: Path
) -> None:
    v1 = put(backend, tmp_path, "f", b"first", ABSENT)
    share.get_file_client("vols/v1/f").upload_file(b"second")
    with pytest.raises(PreconditionFailed):
        read(backend, "f", version=v1, start=0, end=3)


def test_credentials_and_options(server: AzureFilesServer, tmp_path: Path) -> None:
    server.reset()
    server.seed_file("data", "vols/k/f", b"via key")
    by_key = azurefile.open_backend(
        "v",
        {
            "share": "data",
            "directory": "vols/k",
            "account_url": server.account_url,
            "account_key": server.key,
        },
    )
    assert read(by_key, "f") == b"via key"

    sas = fs.generate_share_sas(
        server.account,
        "data",
        server.key,
        fs.ShareSasPermissions(read=True, create=True, write=True, delete=True, list=True),
        datetime.now(UTC) + timedelta(hours=1),
    )
    by_sas = azurefile.open_backend(
        "v",
        {
            "share": "data",
            "directory": "vols/k",
            "account_url": server.account_url,
            "sas_token": sas,
        },
    )
    put(by_sas, tmp_path, "g", b"via sas", ABSENT)
    assert read(by_key, "g") == b"via sas"
    assert "sig=" not in by_sas.describe()

    wrong = azurefile.open_backend(
        "v",
        {"share": "data", "account_url": server.account_url, "account_key": "QUJD" * 22},
    )
    with pytest.raises(AuthFailed) as err:
        wrong.check()
    assert "QUJD" not in str(err.value)

    for bad in (
        {"share": "s"},
        {"share": "s", "account_url": "http://x", "account_key": "k", "sas_token": "t"},
        {"share": "s", "connection_string": "c", "account_key": "k"},
    ):
        with pytest.raises(InvalidArgument):
            azurefile.open_backend("v", bad)


def test_faults_become_transient_or_are_retried(server: AzureFilesServer, tmp_path: Path) -> None:
    server.reset()
    with FaultProxy("127.0.0.1", server.port) as proxy:
        conn = server.connection_string.replace(server.account_url, f"{proxy.url}/{server.account}")
        b = azurefile.open_backend("v", {"share": "data", "connection_string": conn})
        b.make_container()
        version = put(b, tmp_path, "f", os.urandom(MiB), ABSENT)

        proxy.fail_next(1, status=503)  # the SDK's one retry absorbs a blip
        assert b.head("f") is not None
        proxy.fail_next(5, status=503)
        with pytest.raises(Transient):
            b.head("f")
        proxy.reset()

        proxy.drop_next(1, after_bytes=4096, match=lambda m, _t: m == "GET")
        with pytest.raises(Transient):
            read(b, "f", version=version)
        assert len(read(b, "f", version=version)) == MiB

        proxy.drop_next(1, after_bytes=0, match=lambda _m, t: "comp=range" in t)
        put(b, tmp_path, "g", b"survives a lost answer", ABSENT)
        assert read(b, "g") == b"survives a lost answer"
        b.close()
