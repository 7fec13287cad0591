"""The Google Cloud Storage backend (google-cloud-storage): generations for conflicts.

A version is the object's generation. Writes carry ``if_generation_match``
(the manifest's generation, or 0 for "must not exist"), deletes too. Large
files go through a resumable upload session whose URL is checkpointed in the
engine's journal, so a crash mid-upload continues from the offset the service
confirms; the object appears only when the last chunk lands. Importing this
module imports the SDK: the driver does it only when a volume is used.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import google.api_core.exceptions as gexc
import google.auth.exceptions
import requests
import urllib3.exceptions
from google.auth import credentials as _credentials
from google.auth.transport import requests as _transport
from google.cloud import storage

from cargohold.drivers.cloud.backend import (
    ABSENT,
    ANY,
    HASH_KEY,
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

# google-auth is only partly typed: use its classes untyped
AnonymousCredentials: Any = _credentials.AnonymousCredentials
AuthorizedSession: Any = _transport.AuthorizedSession

# resumable chunks must be multiples of 256 KiB
_CHUNK = 8 * 1024 * 1024
_TIMEOUT = 60.0
_TRANSIENT = (
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    gexc.TooManyRequests,
    gexc.RetryError,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    google.auth.exceptions.TransportError,
    # a connection cut mid-body surfaces from urllib3 or http.client, unwrapped
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


def open_backend(volume: str, opts: dict[str, Any]) -> GCSBackend:
    """Build the backend for one volume from its options (secrets resolved)."""
    endpoint = opts.get("endpoint") or None
    key = opts.get("credentials_file")
    credentials: Any = None
    project = opts.get("project") or None
    try:
        if key:
            from google.oauth2 import service_account

            accounts: Any = service_account.Credentials
            text = str(key)
            if text.lstrip().startswith("{"):  # a file: reference resolves to the key itself
                info = json.loads(text)
                credentials = accounts.from_service_account_info(info)
            else:
                credentials = accounts.from_service_account_file(text)
            credentials = credentials.with_scopes(
                ["https://www.googleapis.com/auth/devstorage.read_write"]
            )
            project = project or getattr(credentials, "project_id", None)
        elif endpoint:
            credentials = AnonymousCredentials()  # an emulator needs none
        options = {"api_endpoint": endpoint} if endpoint else None
        client = storage.Client(
            project=project or ("local" if endpoint else None),
            credentials=credentials,
            client_options=options,
        )
    except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as err:
        raise AuthFailed(
            f"volume {volume}: the GCS credentials cannot be used ({type(err).__name__}); "
            "give credentials_file=file:/path/to/key.json"
        ) from None
    return GCSBackend(client, str(opts["bucket"]), str(opts.get("prefix") or ""))


class GCSBackend(Backend):
    chunk_size = _CHUNK

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = client.bucket(bucket)
        self.name = bucket
        self.root = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._session_lock = threading.Lock()
        self._session: Any = None

    def describe(self) -> str:
        return f"gs://{self.name}/{self.root}"

    def _key(self, path: str) -> str:
        return self.root + path

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except BaseException as err:
            raise _translate(err, f"{what} on {self.describe()}") from None

    def _http(self) -> Any:
        with self._session_lock:
            if self._session is None:
                self._session = AuthorizedSession(self.client._credentials)
            return self._session

    # -- the container ----------------------------------------------------------

    def check(self) -> None:
        self._call("checking the bucket", lambda: self.bucket.reload(timeout=_TIMEOUT, retry=None))

    def make_container(self) -> None:
        try:
            self.client.create_bucket(self.name, timeout=_TIMEOUT)
        except gexc.Conflict:
            pass  # it exists already
        except BaseException as err:
            raise _translate(err, f"creating bucket {self.name}") from None
        if self.root:
            marker = self.bucket.blob(self.root)
            self._call("creating the prefix", lambda: marker.upload_from_string(b""))

    # -- reading ----------------------------------------------------------------

    def list(self) -> Iterator[RemoteEntry]:
        blobs = iter(
            self.client.list_blobs(self.bucket, prefix=self.root or None, timeout=_TIMEOUT)
        )
        while True:
            blob = self._call("listing", lambda: next(blobs, None))
            if blob is None:
                return
            path = blob.name[len(self.root) :]
            if path:
                yield _entry(blob, path)

    def head(self, path: str) -> RemoteEntry | None:
        for key in (self._key(path), self._key(path) + "/"):
            blob = self._get_blob(key, f"reading {path}")
            if blob is not None:
                return _entry(blob, blob.name[len(self.root) :])
        return None

    def _get_blob(self, key: str, what: str) -> Any:
        try:
            return self.bucket.get_blob(key, timeout=_TIMEOUT, retry=None)
        except BaseException as err:
            raise _translate(err, what) from None

    def get(
        self, path: str, *, version: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        blob = self.bucket.blob(self._key(path), generation=int(version) if version else None)
        kwargs: dict[str, Any] = {"timeout": _TIMEOUT, "retry": None, "checksum": None}
        if start:
            kwargs["start"] = start
        if end is not None:
            kwargs["end"] = end - 1  # inclusive here
        try:
            data = blob.download_as_bytes(raw_download=True, **kwargs)
        except gexc.NotFound:
            if version is not None:  # that generation is gone: it was replaced or deleted
                raise PreconditionFailed(f"{path} changed remotely while it was fetched") from None
            raise RemoteNotFound(f"{path} is gone") from None
        except BaseException as err:
            raise _translate(err, f"reading {path}") from None
        yield data

    # -- writing ----------------------------------------------------------------

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
        blob = self.bucket.blob(self._key(path))
        blob.metadata = {HASH_KEY: sha256}
        what = f"writing {path}"
        if size <= self.chunk_size:
            data = source.read_bytes()
            self._call(
                what,
                lambda: blob.upload_from_string(
                    data,
                    content_type="application/octet-stream",
                    if_generation_match=_generation(expect),
                    timeout=_TIMEOUT,
                    retry=None,
                ),
            )
            progress(len(data))
            return str(blob.generation)
        return self._put_resumable(path, blob, source, size, sha256, expect, checkpoint, progress)

    def _put_resumable(
        self,
        path: str,
        blob: Any,
        source: Path,
        size: int,
        sha256: str,
        expect: Expect,
        checkpoint: Checkpoint,
        progress: Progress,
    ) -> str:
        what = f"writing {path}"
        # some servers ignore preconditions on resumable uploads: check first as well
        self._check_expect(path, expect)
        state = checkpoint.load()
        url: str | None = None
        offset = 0
        if state and state.get("sha256") == sha256 and state.get("url"):
            url = str(state["url"])
            offset = self._confirmed(url, size)
        if url is None or offset < 0:
            url = self._call(
                what,
                lambda: blob.create_resumable_upload_session(
                    content_type="application/octet-stream",
                    size=size,
                    if_generation_match=_generation(expect),
                    timeout=_TIMEOUT,
                ),
            )
            offset = 0
            checkpoint.save({"url": url, "sha256": sha256})
        progress(offset)
        http = self._http()
        with source.open("rb") as file:
            while True:
                file.seek(offset)
                data = file.read(self.chunk_size)
                last = offset + len(data) >= size
                headers = {"Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}"}
                answer = self._call(
                    what,
                    lambda d=data, h=headers: http.put(url, data=d, headers=h, timeout=_TIMEOUT),  # type: ignore[misc]
                )
                if answer.status_code in (200, 201):
                    progress(len(data))
                    return str(answer.json()["generation"])
                if answer.status_code != 308 or last:
                    raise _status_error(answer.status_code, what)
                confirmed = _range_end(answer.headers.get("Range"))
                progress(confirmed - offset)
                offset = confirmed  # the session itself says how far it got on a resume

    def _confirmed(self, url: str, size: int) -> int:
        """How many bytes a session holds (-1: the session is gone, start again)."""
        try:
            answer = self._http().put(
                url, data=b"", headers={"Content-Range": f"bytes */{size}"}, timeout=_TIMEOUT
            )
        except BaseException as err:
            raise _translate(err, "resuming an upload") from None
        if answer.status_code == 308:
            return _range_end(answer.headers.get("Range"))
        return -1  # 404/410: expired or finished elsewhere; a fresh session is safe

    def _check_expect(self, path: str, expect: Expect) -> None:
        if expect == ANY:
            return
        blob = self._get_blob(self._key(path), f"reading {path}")
        if expect.absent and blob is not None:
            raise PreconditionFailed(f"{path} was created remotely meanwhile")
        if expect.version is not None and (blob is None or str(blob.generation) != expect.version):
            raise PreconditionFailed(f"{path} was changed or deleted remotely meanwhile")

    def make_dir(self, path: str, *, expect: Expect = ABSENT) -> str:
        blob = self.bucket.blob(self._key(path) + "/")
        try:
            blob.upload_from_string(
                b"", if_generation_match=_generation(expect), timeout=_TIMEOUT, retry=None
            )
            return str(blob.generation)
        except gexc.PreconditionFailed:
            pass
        except BaseException as err:
            raise _translate(err, f"creating directory {path}") from None
        found = self.head(path)
        if found is None or not found.is_dir:
            raise PreconditionFailed(f"{path} exists remotely and is not a directory")
        return found.version

    def delete(self, path: str, *, expect: Expect = ANY, is_dir: bool = False) -> None:
        blob = self.bucket.blob(self._key(path) + ("/" if is_dir else ""))
        generation = int(expect.version) if expect.version is not None else None
        try:
            blob.delete(if_generation_match=generation, timeout=_TIMEOUT, retry=None)
        except gexc.NotFound:
            return  # already gone
        except BaseException as err:
            raise _translate(err, f"deleting {path}") from None

    def delete_all(self) -> None:
        names = [self._key(e.path) + ("/" if e.is_dir else "") for e in self.list()]
        if self.root:
            names.append(self.root)
        for name in names:
            try:
                self.bucket.blob(name).delete(timeout=_TIMEOUT)
            except gexc.NotFound:
                continue
            except BaseException as err:
                raise _translate(err, "deleting the volume's objects") from None

    def close(self) -> None:
        with self._session_lock:
            if self._session is not None:
                self._session.close()
                self._session = None
        http: Any = getattr(self.client, "_http_internal", None)
        if http is not None:
            http.close()


def _entry(blob: Any, path: str) -> RemoteEntry:
    return RemoteEntry(
        path=path.rstrip("/"),
        is_dir=path.endswith("/"),
        size=int(blob.size or 0),
        version=str(blob.generation),
        mtime=blob.updated.timestamp() if blob.updated else 0.0,
        sha256=(blob.metadata or {}).get(HASH_KEY),
    )


def _generation(expect: Expect) -> int | None:
    if expect.absent:
        return 0
    return int(expect.version) if expect.version is not None else None


def _range_end(header: str | None) -> int:
    """``bytes=0-1048575`` -> 1048576 (the next offset); no header -> 0."""
    if not header:
        return 0
    return int(header.rpartition("-")[2]) + 1


def _status_error(status: int, what: str) -> BackendError:
    if status == 412:
        return PreconditionFailed(f"{what}: the object changed remotely (HTTP 412)")
    if status in (401, 403):
        return AuthFailed(f"{what}: the credentials were refused (HTTP {status})")
    if status == 404:
        return RemoteNotFound(f"{what}: the upload session is gone (HTTP 404)")
    if status >= 500 or status == 429:
        return Transient(f"{what}: HTTP {status}")
    return BackendError(f"{what}: HTTP {status}")


def _translate(err: BaseException, what: str) -> BaseException:
    """An SDK failure as one of the backend's typed errors (never with credentials)."""
    if isinstance(err, BackendError | KeyboardInterrupt | SystemExit | GeneratorExit):
        return err
    if isinstance(err, gexc.PreconditionFailed):
        return PreconditionFailed(f"{what}: the object changed remotely (HTTP 412)")
    if isinstance(err, gexc.NotFound):
        if "bucket" in what:
            return ContainerNotFound(f"{what}: the bucket does not exist")
        message = str(getattr(err, "message", "")).lower()
        if "bucket" in message and "not" in message:
            return ContainerNotFound(f"{what}: the bucket does not exist")
        return RemoteNotFound(f"{what}: not found")
    if isinstance(err, gexc.Unauthorized | gexc.Forbidden):
        return AuthFailed(f"{what}: the credentials were refused (HTTP {err.code})")
    if isinstance(
        err, google.auth.exceptions.DefaultCredentialsError | google.auth.exceptions.RefreshError
    ):
        return AuthFailed(f"{what}: no usable credentials (give credentials_file)")
    if isinstance(err, _TRANSIENT):
        return Transient(f"{what}: {type(err).__name__}")
    if isinstance(err, gexc.GoogleAPICallError):
        return BackendError(f"{what}: HTTP {err.code}")
    if isinstance(err, OSError):
        return Transient(f"{what}: {type(err).__name__}")
    return err
