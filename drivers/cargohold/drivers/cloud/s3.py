"""The S3 backend (boto3): any S3-compatible endpoint, conditional writes for conflicts.

Conflicts are S3's conditional requests: ``If-Match`` with the manifest's ETag
for an overwrite or delete, ``If-None-Match: *`` for a new object. Large files
go as multipart uploads whose upload id and finished parts are checkpointed in
the engine's journal, so a crash mid-upload resumes where it stopped; a
multipart object is invisible until it is completed. Importing this module
imports boto3: the driver does it only when a volume is used.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from cargohold.core import InvalidArgument
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

# S3 parts must be at least 5 MiB (but the last); 8 MiB keeps 256 MB at 32 parts.
_PART_SIZE = 8 * 1024 * 1024
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "AuthorizationHeaderMalformed",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
    # concurrent conditional writes on one key: the retry then sees 412 or succeeds
    "ConditionalRequestConflict",
}


def open_backend(volume: str, opts: dict[str, Any]) -> S3Backend:
    """Build the backend for one volume from its options (secrets resolved)."""
    key_id, secret = opts.get("access_key_id"), opts.get("secret_access_key")
    if bool(key_id) != bool(secret):
        raise InvalidArgument(
            f"volume {volume}: give access_key_id and secret_access_key together, or neither "
            "(then boto3's own credential chain applies)"
        )
    endpoint = opts.get("endpoint_url") or None
    concurrency = int(opts.get("concurrency") or 8)
    config = Config(
        # custom endpoints (MinIO, moto, Ceph) mostly want path-style addressing
        s3={"addressing_style": "path" if endpoint else "auto"},
        # the engine retries with its own backoff and journal; one SDK retry covers blips
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=max(10, concurrency * 4),
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        region_name=opts.get("region") or None,
    )
    client = session.client("s3", endpoint_url=endpoint, config=config)
    return S3Backend(client, str(opts["bucket"]), str(opts.get("prefix") or ""), session)


class S3Backend(Backend):
    chunk_size = _PART_SIZE

    def __init__(self, client: Any, bucket: str, prefix: str, session: Any = None) -> None:
        self.client = client
        self.bucket = bucket
        self.root = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._region = session.region_name if session is not None else None

    # -- helpers ---------------------------------------------------------------

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.root}"

    def _key(self, path: str) -> str:
        return self.root + path

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except BaseException as err:
            raise _translate(err, f"{what} on {self.describe()}") from None

    # -- the container ---------------------------------------------------------

    def check(self) -> None:
        self._call("checking the bucket", lambda: self.client.head_bucket(Bucket=self.bucket))

    def make_container(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self._region and self._region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self.client.create_bucket(**kwargs)
        except botocore.exceptions.ClientError as err:
            if _code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _translate(err, f"creating bucket {self.bucket}") from None
        if self.root:
            self._call(
                "creating the prefix",
                lambda: self.client.put_object(Bucket=self.bucket, Key=self.root, Body=b""),
            )

    # -- reading ---------------------------------------------------------------

    def list(self) -> Iterator[RemoteEntry]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.root)
        iterator = iter(pages)
        while True:
            page = self._call("listing", lambda: next(iterator, None))
            if page is None:
                return
            for item in page.get("Contents", ()):
                key: str = item["Key"]
                path = key[len(self.root) :]
                if not path:  # the prefix's own marker
                    continue
                is_dir = path.endswith("/")
                yield RemoteEntry(
                    path=path.rstrip("/"),
                    is_dir=is_dir,
                    size=int(item["Size"]),
                    version=_etag(item["ETag"]),
                    mtime=item["LastModified"].timestamp(),
                )

    def head(self, path: str) -> RemoteEntry | None:
        for key, is_dir in ((self._key(path), False), (self._key(path) + "/", True)):
            try:
                found = self.client.head_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as err:
                if _status(err) == 404:
                    continue
                raise _translate(err, f"reading {path} on {self.describe()}") from None
            except BaseException as err:
                raise _translate(err, f"reading {path} on {self.describe()}") from None
            return RemoteEntry(
                path=path,
                is_dir=is_dir,
                size=int(found["ContentLength"]),
                version=_etag(found["ETag"]),
                mtime=found["LastModified"].timestamp(),
                sha256=found.get("Metadata", {}).get(HASH_KEY),
            )
        return None

    def get(
        self, path: str, *, version: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(path)}
        if version is not None:
            kwargs["IfMatch"] = f'"{version}"'
        if start or end is not None:
            if end is not None and end <= start:
                return
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        what = f"reading {path}"
        answer = self._call(what, lambda: self.client.get_object(**kwargs))
        body = answer["Body"]
        try:
            chunks = body.iter_chunks(1024 * 1024)
            while True:
                chunk = self._call(what, lambda: next(chunks, None))
                if chunk is None:
                    return
                yield chunk
        finally:
            body.close()

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
        if size <= self.chunk_size:
            return self._put_single(path, source, sha256, expect, progress)
        return self._put_multipart(
            path, source, size, sha256, expect, checkpoint, progress, parallel
        )

    def _put_single(
        self, path: str, source: Path, sha256: str, expect: Expect, progress: Progress
    ) -> str:
        data = source.read_bytes()
        kwargs = {
            "Bucket": self.bucket,
            "Key": self._key(path),
            "Body": data,
            "Metadata": {HASH_KEY: sha256},
            **_conditions(expect),
        }
        answer = self._call(f"writing {path}", lambda: self.client.put_object(**kwargs))
        progress(len(data))
        return _etag(answer["ETag"])

    def _put_multipart(
        self,
        path: str,
        source: Path,
        size: int,
        sha256: str,
        expect: Expect,
        checkpoint: Checkpoint,
        progress: Progress,
        parallel: int,
    ) -> str:
        key, what = self._key(path), f"writing {path}"
        self._check_expect(path, expect)  # fail before uploading 256 MB, not after
        state = checkpoint.load()
        parts: dict[int, str] | None = None
        upload_id: str | None = None
        if state and state.get("sha256") == sha256 and state.get("upload_id"):
            upload_id = str(state["upload_id"])
            parts = self._parts_done(key, upload_id)
        if upload_id is None or parts is None:
            created = self._call(
                what,
                lambda: self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=key, Metadata={HASH_KEY: sha256}
                ),
            )
            upload_id, parts = str(created["UploadId"]), {}
            # the id is all a resume needs: S3 itself lists the parts it holds
            checkpoint.save({"upload_id": upload_id, "sha256": sha256})
        done: dict[int, str] = parts
        uid: str = upload_id
        count = (size + self.chunk_size - 1) // self.chunk_size
        progress(sum(min(self.chunk_size, size - (n - 1) * self.chunk_size) for n in done))
        guard = threading.Lock()  # parts finish in several threads

        def send(number: int) -> None:
            offset = (number - 1) * self.chunk_size
            with source.open("rb") as file:
                file.seek(offset)
                data = file.read(min(self.chunk_size, size - offset))
            answer = self._call(
                what,
                lambda: self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=uid,
                    PartNumber=number,
                    Body=data,
                ),
            )
            with guard:
                done[number] = _etag(answer["ETag"])
            progress(len(data))

        todo = [n for n in range(1, count + 1) if n not in done]
        with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="s3-part") as pool:
            for future in [pool.submit(send, n) for n in todo]:
                future.result()
        try:
            self._check_expect(path, expect)  # S3 also checks If-Match; some servers do not
            answer = self._call(
                what,
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=uid,
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": f'"{done[n]}"'} for n in sorted(done)]
                    },
                    **_conditions(expect),
                ),
            )
        except PreconditionFailed:
            self._abort(key, uid)
            raise
        return _etag(answer["ETag"])

    def _parts_done(self, key: str, upload_id: str) -> dict[int, str] | None:
        """The parts S3 already holds for an upload, or None if the upload is gone."""
        done: dict[int, str] = {}
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
            for page in pages:
                for part in page.get("Parts", ()):
                    done[int(part["PartNumber"])] = _etag(part["ETag"])
        except botocore.exceptions.ClientError as err:
            if _code(err) in ("NoSuchUpload", "NoSuchKey") or _status(err) == 404:
                return None
            raise _translate(err, f"resuming the upload of {key}") from None
        return done

    def _abort(self, key: str, upload_id: str) -> None:
        # an abandoned upload is invisible; lifecycle rules clean it up
        with contextlib.suppress(
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
        ):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _check_expect(self, path: str, expect: Expect) -> None:
        if expect == ANY:
            return
        try:
            found = self.client.head_object(Bucket=self.bucket, Key=self._key(path))
            current: str | None = _etag(found["ETag"])
        except botocore.exceptions.ClientError as err:
            if _status(err) != 404:
                raise _translate(err, f"reading {path}") from None
            current = None
        except BaseException as err:
            raise _translate(err, f"reading {path}") from None
        if expect.absent and current is not None:
            raise PreconditionFailed(f"{path} was created remotely meanwhile")
        if expect.version is not None and current != expect.version:
            raise PreconditionFailed(f"{path} was changed or deleted remotely meanwhile")

    def make_dir(self, path: str, *, expect: Expect = ABSENT) -> str:
        key = self._key(path) + "/"
        try:
            answer = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=b"", **_conditions(expect)
            )
            return _etag(answer["ETag"])
        except botocore.exceptions.ClientError as err:
            if _status(err) != 412:
                raise _translate(err, f"creating directory {path}") from None
        found = self.head(path)  # an existing marker is the directory we wanted
        if found is None or not found.is_dir:
            raise PreconditionFailed(f"{path} exists remotely and is not a directory")
        return found.version

    def delete(self, path: str, *, expect: Expect = ANY, is_dir: bool = False) -> None:
        key = self._key(path) + ("/" if is_dir else "")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if expect.version is not None:
            kwargs["IfMatch"] = f'"{expect.version}"'
        try:
            self.client.delete_object(**kwargs)
        except botocore.exceptions.ClientError as err:
            if _status(err) == 404 and _code(err) != "NoSuchBucket":
                return  # already gone
            raise _translate(err, f"deleting {path}") from None
        except BaseException as err:
            raise _translate(err, f"deleting {path}") from None

    def delete_all(self) -> None:
        keys = [self._key(e.path) + ("/" if e.is_dir else "") for e in self.list()]
        if self.root:
            keys.append(self.root)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "deleting the volume's objects",
                lambda batch=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                ),
            )

    def close(self) -> None:
        self.client.close()


def _conditions(expect: Expect) -> dict[str, str]:
    if expect.absent:
        return {"IfNoneMatch": "*"}
    if expect.version is not None:
        return {"IfMatch": f'"{expect.version}"'}
    return {}


def _etag(raw: str) -> str:
    return raw.strip('"')


def _code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: botocore.exceptions.ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _translate(err: BaseException, what: str) -> BaseException:
    """A botocore failure as one of the backend's typed errors (never with credentials)."""
    if isinstance(err, BackendError | KeyboardInterrupt | SystemExit | GeneratorExit):
        return err
    if isinstance(err, botocore.exceptions.ClientError):
        code, status = _code(err), _status(err)
        detail = f"{what}: {code or 'error'} (HTTP {status})"
        if status == 412 or code == "PreconditionFailed":
            return PreconditionFailed(f"{what}: the object changed remotely (HTTP 412)")
        if code == "NoSuchBucket" or (status == 404 and "bucket" in what):
            return ContainerNotFound(f"{what}: the bucket does not exist")
        if status == 404 or code in ("NoSuchKey", "NotFound"):
            return RemoteNotFound(f"{what}: not found")
        if code in _AUTH_CODES or status in (401, 403):
            return AuthFailed(f"{what}: the credentials were refused ({code or status})")
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return Transient(detail)
        return BackendError(detail)
    if isinstance(
        err, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return AuthFailed(f"{what}: no credentials found (give access_key_id/secret_access_key)")
    if isinstance(
        err,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.ResponseStreamingError
        | botocore.exceptions.IncompleteReadError
        | ConnectionError
        | TimeoutError,
    ):
        return Transient(f"{what}: connection failed ({type(err).__name__})")
    if isinstance(err, botocore.exceptions.BotoCoreError | OSError):
        # urllib3's ProtocolError and friends arrive wrapped or bare, all worth a retry
        return Transient(f"{what}: {type(err).__name__}")
    if type(err).__module__.startswith("urllib3"):
        return Transient(f"{what}: connection failed ({type(err).__name__})")
    return err
