"""The Azure Files backend (azure-storage-file-share): leases and ETag checks for conflicts.

The File service has no conditional writes, and a file written range by range is
visible with partial content. So `AzureFileBackend.put` never writes the target
in place: it writes the new content to a hidden temporary file in the same
directory, then renames it over the target in one request. Conflicts:

- an overwrite (``Expect(version=...)``) first takes an infinite lease on the
  target, checks the ETag while holding it, keeps it for the whole upload (every
  other writer gets 412 ``LeaseIdMissing``), and the rename names the lease, so
  nothing can slip in between the check and the swap;
- a new file (``ABSENT``) is renamed without ``replace-if-exists``: a file that
  appeared meanwhile makes the rename fail, which is the precondition failing.

The temporary name, the lease id and the chunks written are checkpointed, so an
upload cut by a crash resumes and re-takes the same lease. Temporary files are
never listed. Metadata names must be C# identifiers here, so the content hash
is stored under `HASH_META`, not `HASH_KEY`. Importing this module imports the SDK.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import posixpath
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.fileshare import (
    LinearRetry,
    ShareClient,
    ShareDirectoryClient,
    ShareFileClient,
    ShareLeaseClient,
    ShareServiceClient,
)

from cargohold.core import InvalidArgument
from cargohold.drivers.cloud.backend import (
    ABSENT,
    ANY,
    AuthFailed,
    Backend,
    BackendError,
    Checkpoint,
    ContainerNotFound,
    Expect,
    PreconditionFailed,
    Progress,
    RemoteEntry,
    RemoteNotFound,
    Transient,
    no_progress,
)

T = TypeVar("T")

#: metadata name of the content's SHA-256 (`backend.HASH_KEY` is not a valid name here)
HASH_META = "cargohold_sha256"
#: prefix of the hidden files that uploads are written to before the rename
TMP_PREFIX = ".cargohold-upload-"
# one Put Range carries at most 4 MiB; a chunk is two of them
_RANGE = 4 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024
# someone else's lease, or a rename racing ours: wait and retry
_BUSY_CODES = {
    "LeaseIdMissing",
    "LeaseAlreadyPresent",
    "LeaseIdMismatchWithFileOperation",
    "SharingViolation",
    "ServerBusy",
    "OperationTimedOut",
    "InternalError",
}


def open_backend(volume: str, opts: dict[str, Any]) -> AzureFileBackend:
    """Build the backend for one volume from its options (secrets resolved)."""
    conn, url = opts.get("connection_string"), opts.get("account_url")
    key, sas = opts.get("account_key"), opts.get("sas_token")
    if conn and (url or key or sas):
        raise InvalidArgument(
            f"volume {volume}: connection_string already names the account and its "
            "credentials; leave out account_url, account_key and sas_token"
        )
    if key and sas:
        raise InvalidArgument(f"volume {volume}: give account_key or sas_token, not both")
    if not conn and not url:
        raise InvalidArgument(
            f"volume {volume}: give account_url (https://ACCOUNT.file.core.windows.net) "
            "or connection_string"
        )
    concurrency = int(opts.get("concurrency") or 8)
    session = requests.Session()
    # requests reads the proxy environment on every request (about 0.7 ms each); there
    # is one endpoint, so it is looked up once, below, with no_proxy honoured
    session.trust_env = False
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, concurrency * 2))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    kwargs: dict[str, Any] = {
        "transport": RequestsTransport(session=session, session_owner=True),
        # the engine retries with its own backoff and journal; one SDK retry covers blips
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=1),
        "connection_timeout": 10,
        "read_timeout": 60,
    }
    if conn:
        client = ShareServiceClient.from_connection_string(str(conn), **kwargs)
    else:
        credential: Any
        if key:
            credential = AzureNamedKeyCredential(_account_name(str(url)), str(key))
        elif sas:
            credential = str(sas).lstrip("?")
        else:
            credential = _default_credential(volume)
            kwargs["token_intent"] = "backup"
        client = ShareServiceClient(str(url), credential=credential, **kwargs)
    session.proxies.update(requests.utils.get_environ_proxies(client.url))
    share = str(opts["share"])
    return AzureFileBackend(client.get_share_client(share), str(opts.get("directory") or ""))


def _account_name(url: str) -> str:
    """The account in ``https://ACCOUNT.file.core.windows.net`` or a path-style local URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or host.replace(".", "").isdigit():
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


def _default_credential(volume: str) -> Any:
    try:
        identity = importlib.import_module("azure.identity")
    except ImportError:
        raise InvalidArgument(
            f"volume {volume}: give account_key, sas_token or connection_string "
            "(or install azure-identity to use Azure's own credential chain)"
        ) from None
    return identity.DefaultAzureCredential()


class AzureFileBackend(Backend):
    chunk_size = _CHUNK

    def __init__(self, share: ShareClient, directory: str) -> None:
        self.share = share
        self.root = directory.strip("/")
        self._known_dirs: set[str] = set()
        self._dirs_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------

    def describe(self) -> str:
        # the account URL carries no SAS here: the SDK keeps the token aside
        host = urlsplit(self.share.url).netloc
        return f"azurefile://{host}/{self.share.share_name}/{self.root}"

    def _full(self, path: str) -> str:
        return f"{self.root}/{path}" if self.root and path else (self.root or path)

    def _file(self, path: str) -> ShareFileClient:
        return self.share.get_file_client(self._full(path))

    def _dir(self, path: str) -> ShareDirectoryClient:
        return self.share.get_directory_client(self._full(path))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except BaseException as err:
            raise _translate(err, f"{what} on {self.describe()}") from None

    def _ensure_dir(self, path: str) -> None:
        """Create the directory ``path`` (relative to the share) and its parents, if missing."""
        if not path:
            return
        with self._dirs_lock:
            if path in self._known_dirs:
                return
        parent = posixpath.dirname(path)
        self._ensure_dir(parent)
        try:
            self.share.get_directory_client(path).create_directory()
        except ResourceExistsError:
            pass
        except BaseException as err:
            raise _translate(err, f"creating directory {path} on {self.describe()}") from None
        with self._dirs_lock:
            self._known_dirs.add(path)

    # -- the container ---------------------------------------------------------

    def check(self) -> None:
        self._call("checking the share", self.share.get_share_properties)

    def make_container(self) -> None:
        try:
            self.share.create_share()
        except ResourceExistsError:
            pass
        except BaseException as err:
            raise _translate(err, f"creating share {self.share.share_name}") from None
        self._ensure_dir(self.root)

    # -- reading ---------------------------------------------------------------

    def list(self) -> Iterator[RemoteEntry]:
        pending = [""]
        while pending:
            rel = pending.pop()
            listing = self._dir(rel).list_directories_and_files(
                include=["timestamps", "Etag"], include_extended_info=True
            )
            items = iter(listing)
            while True:
                try:
                    item = next(items, None)
                except ResourceNotFoundError as err:
                    if _code(err) == "ShareNotFound":
                        raise _translate(err, f"listing {self.describe()}") from None
                    if not rel:
                        return  # no root directory yet: an empty volume
                    break  # removed while we listed: its entries are gone too
                except BaseException as err:
                    raise _translate(err, f"listing {self.describe()}") from None
                if item is None:
                    break
                if item.name.startswith(TMP_PREFIX):
                    continue
                path = f"{rel}/{item.name}" if rel else item.name
                modified = getattr(item, "last_modified", None)
                mtime = modified.timestamp() if modified is not None else 0.0
                version = _etag(getattr(item, "etag", None))
                if item.is_directory:
                    pending.append(path)
                    yield RemoteEntry(path, True, 0, version, mtime)
                else:
                    size = int(getattr(item, "size", 0) or 0)
                    yield RemoteEntry(path, False, size, version, mtime)

    def head(self, path: str) -> RemoteEntry | None:
        what = f"reading {path} on {self.describe()}"
        try:
            props = self._file(path).get_file_properties()
            return RemoteEntry(
                path,
                False,
                int(props.size),
                _etag(props.etag),
                props.last_modified.timestamp(),
                (props.metadata or {}).get(HASH_META),
            )
        except ResourceNotFoundError as err:
            if _code(err) == "ShareNotFound":
                raise _translate(err, what) from None
        except BaseException as err:
            raise _translate(err, what) from None
        try:
            dprops = self._dir(path).get_directory_properties()
        except ResourceNotFoundError as err:
            if _code(err) == "ShareNotFound":
                raise _translate(err, what) from None
            return None
        except BaseException as err:
            raise _translate(err, what) from None
        return RemoteEntry(path, True, 0, _etag(dprops.etag), dprops.last_modified.timestamp())

    def get(
        self, path: str, *, version: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        what = f"reading {path}"
        kwargs: dict[str, Any] = {}
        if start or end is not None:
            kwargs = {"offset": start, "length": None if end is None else end - start}
        try:
            download = self._file(path).download_file(**kwargs)
        except HttpResponseError as err:
            if err.status_code == 416:  # a range past the end: nothing there
                return
            raise _translate(err, what) from None
        except BaseException as err:
            raise _translate(err, what) from None
        # no If-Match on this service: the answer's ETag says which version it is
        if version is not None and _etag(download.properties.etag) != version:
            raise PreconditionFailed(f"{what}: the file changed remotely")
        chunks = download.chunks()
        while True:
            chunk = self._call(what, lambda: next(chunks, None))
            if chunk is None:
                return
            yield chunk

    # -- writing ---------------------------------------------------------------

    def put(
        self,
        path: str,
        source: Path,
        *,
        size: int,
        sha256: str,
        expect: Expect,
        checkpoint: Checkpoint,
        progress: Progress = no_progress,
        parallel: int = 1,
    ) -> str:
        what = f"writing {path}"
        full = self._full(path)
        folder = posixpath.dirname(full)
        state = checkpoint.load() or {}
        if state.get("sha256") != sha256:
            state = {}
        # ids first, on disk, before any lease exists: a resumed upload re-takes the same
        # lease instead of meeting a lease nobody knows
        state = {
            "sha256": sha256,
            "lease": state.get("lease") or str(uuid.uuid4()),
            "tmp": state.get("tmp") or f"{TMP_PREFIX}{uuid.uuid4().hex[:16]}",
            "done": list(state.get("done") or []),
        }
        # a one-chunk upload of a new file has nothing worth resuming: no disk write for it
        durable = expect.version is not None or size > self.chunk_size
        if durable:
            checkpoint.save(state)
        self._ensure_dir(folder)
        target = self.share.get_file_client(full)
        lease: ShareLeaseClient | None = None
        if expect.version is not None:
            lease = self._lease_at(target, str(state["lease"]), expect.version, what)
        swapped = False
        try:
            tmp = self.share.get_file_client(posixpath.join(folder, str(state["tmp"])))
            self._write_tmp(
                tmp,
                source,
                size,
                sha256,
                state,
                checkpoint if durable else None,
                progress,
                parallel,
            )
            headers: dict[str, Any] = {}
            try:
                tmp.rename_file(
                    full,
                    overwrite=not expect.absent,
                    destination_lease=lease,
                    metadata={HASH_META: sha256},
                    cls=lambda _resp, _body, h: headers.update(h),
                )
            except ResourceExistsError:
                with contextlib.suppress(AzureError):
                    tmp.delete_file()
                raise PreconditionFailed(
                    f"{what}: the file was created remotely meanwhile"
                ) from None
            except BaseException as err:
                raise _translate(err, what) from None
            swapped = True  # the rename consumed the target's lease with the old file
            etag = headers.get("ETag")
            if etag:
                return _etag(etag)
            return _etag(self._call(what, target.get_file_properties).etag)
        finally:
            if lease is not None and not swapped:
                with contextlib.suppress(AzureError):
                    lease.release()

    def _lease_at(
        self, target: ShareFileClient, lease_id: str, version: str, what: str
    ) -> ShareLeaseClient:
        """Lease ``target``, then check under the lease that it is at ``version``."""
        lease = ShareLeaseClient(target, lease_id=lease_id)
        self._call(what, lambda: lease.acquire())
        try:
            current = self._call(what, lambda: target.get_file_properties(lease=lease))
        except BaseException:
            with contextlib.suppress(AzureError):
                lease.release()
            raise
        if _etag(current.etag) != version:
            with contextlib.suppress(AzureError):
                lease.release()
            raise PreconditionFailed(f"{what}: the file changed remotely")
        return lease

    def _write_tmp(
        self,
        tmp: ShareFileClient,
        source: Path,
        size: int,
        sha256: str,
        state: dict[str, Any],
        checkpoint: Checkpoint | None,
        progress: Progress,
        parallel: int,
    ) -> None:
        what = f"uploading {tmp.file_name}"
        done: set[int] = set(state["done"])
        if done:
            try:
                props = tmp.get_file_properties()
                if props.size != size or (props.metadata or {}).get(HASH_META) != sha256:
                    done = set()
            except ResourceNotFoundError:
                done = set()
            except BaseException as err:
                raise _translate(err, what) from None
        if not done:
            self._call(what, lambda: tmp.create_file(size, metadata={HASH_META: sha256}))
        count = (size + self.chunk_size - 1) // self.chunk_size
        progress(sum(min(self.chunk_size, size - n * self.chunk_size) for n in done))
        guard = threading.Lock()

        def send(n: int) -> None:
            offset = n * self.chunk_size
            length = min(self.chunk_size, size - offset)
            with source.open("rb") as file:
                data = os.pread(file.fileno(), length, offset)
            for at in range(0, length, _RANGE):
                self._put_range(tmp, data[at : at + _RANGE], offset + at, what)
            with guard:
                done.add(n)
                if checkpoint is not None:
                    checkpoint.save({**state, "done": sorted(done)})
            progress(length)

        todo = [n for n in range(count) if n not in done]
        if len(todo) <= 1 or parallel <= 1:
            for n in todo:
                send(n)
            return
        with ThreadPoolExecutor(min(parallel, len(todo)), thread_name_prefix="azure-range") as pool:
            for future in [pool.submit(send, n) for n in todo]:
                future.result()

    def _put_range(self, tmp: ShareFileClient, piece: bytes, offset: int, what: str) -> None:
        self._call(what, lambda: tmp.upload_range(piece, offset, len(piece)))

    def make_dir(self, path: str, *, expect: Expect = ABSENT) -> str:
        full = self._full(path)
        self._ensure_dir(posixpath.dirname(full))
        client = self.share.get_directory_client(full)
        what = f"creating directory {path}"
        try:
            client.create_directory()
        except ResourceExistsError:
            pass  # a directory we wanted, or a file in the way (below)
        except BaseException as err:
            raise _translate(err, what) from None
        try:
            props = client.get_directory_properties()
        except ResourceNotFoundError:
            raise PreconditionFailed(f"{what}: a file of that name exists remotely") from None
        except BaseException as err:
            raise _translate(err, what) from None
        with self._dirs_lock:
            self._known_dirs.add(full)
        return _etag(props.etag)

    def delete(self, path: str, *, expect: Expect = ANY, is_dir: bool = False) -> None:
        what = f"deleting {path}"
        if is_dir:
            # a directory's ETag moves with its own properties only; what matters is
            # that nothing was added to it remotely: the service refuses a non-empty one
            try:
                self._dir(path).delete_directory()
            except ResourceNotFoundError as err:
                if _code(err) == "ShareNotFound":
                    raise _translate(err, what) from None
            except ResourceExistsError as err:
                if _code(err) == "DirectoryNotEmpty":
                    raise PreconditionFailed(f"{what}: files were added remotely") from None
                raise _translate(err, what) from None
            except BaseException as err:
                raise _translate(err, what) from None
            with self._dirs_lock:
                self._known_dirs.discard(self._full(path))
            return
        target = self._file(path)
        lease: ShareLeaseClient | None = None
        try:
            if expect.version is not None:
                lease = self._lease_at(target, str(uuid.uuid4()), expect.version, what)
            target.delete_file(lease=lease)
            lease = None  # gone with the file
        except RemoteNotFound:
            return
        except ResourceNotFoundError as err:
            if _code(err) == "ShareNotFound":
                raise _translate(err, what) from None
        except BaseException as err:
            raise _translate(err, what) from None
        finally:
            if lease is not None:
                with contextlib.suppress(AzureError):
                    lease.release()

    def delete_all(self) -> None:
        entries = list(self.list())
        for entry in entries:
            if not entry.is_dir:
                self._delete_breaking_leases(entry.path)
        # children sort after their parents: reversed, each directory comes before its parent
        for rel in [*sorted((e.path for e in entries if e.is_dir), reverse=True), ""]:
            self._remove_tmp_files(rel)  # uploads a crash left behind hide in any directory
            if rel:
                self.delete(rel, is_dir=True)
        if self.root:
            try:
                self.share.get_directory_client(self.root).delete_directory()
            except ResourceNotFoundError:
                pass
            except BaseException as err:
                raise _translate(err, f"deleting {self.describe()}") from None

    def _delete_breaking_leases(self, path: str) -> None:
        # delete_remote=true is the owner's explicit wish: a stale lease must not stop it
        try:
            self.delete(path)
        except Transient:
            with contextlib.suppress(AzureError):
                ShareLeaseClient(self._file(path)).break_lease()
            self.delete(path)

    def _remove_tmp_files(self, rel: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            for item in self._dir(rel).list_directories_and_files(name_starts_with=TMP_PREFIX):
                self._delete_breaking_leases(f"{rel}/{item.name}" if rel else item.name)

    def close(self) -> None:
        self.share.close()


def _code(err: BaseException) -> str:
    """The service's error code; the SDK gives a StorageErrorCode enum when it knows it."""
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


def _translate(err: BaseException, what: str) -> BaseException:
    """An SDK failure as one of the backend's typed errors (never with credentials)."""
    if isinstance(err, BackendError | KeyboardInterrupt | SystemExit | GeneratorExit):
        return err
    if isinstance(err, ResourceModifiedError):
        return PreconditionFailed(f"{what}: the file changed remotely while being read")
    if isinstance(err, ServiceRequestError | ServiceResponseError | IncompleteReadError):
        return Transient(f"{what}: connection failed ({type(err).__name__})")
    if isinstance(err, HttpResponseError):
        code, status = _code(err), int(err.status_code or 0)
        if code == "ShareNotFound":
            return ContainerNotFound(f"{what}: the share does not exist")
        if isinstance(err, ClientAuthenticationError) or status in (401, 403):
            return AuthFailed(f"{what}: the credentials were refused ({code or status})")
        if status == 404 or isinstance(err, ResourceNotFoundError):
            return RemoteNotFound(f"{what}: not found ({code or status})")
        if status < 400 or status >= 500 or status in (408, 429) or code in _BUSY_CODES:
            # below 400: a body cut short after a good status line
            return Transient(f"{what}: {code or 'error'} (HTTP {status or 'no answer'})")
        return BackendError(f"{what}: {code or 'error'} (HTTP {status})")
    if isinstance(err, ClientAuthenticationError):  # e.g. a key that is not base64
        return AuthFailed(f"{what}: the credentials could not be used")
    if isinstance(err, AzureError | ConnectionError | TimeoutError | OSError):
        return Transient(f"{what}: {type(err).__name__}")
    return err
