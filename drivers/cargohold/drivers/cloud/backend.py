"""The thin adapter each cloud service implements for the sync engine.

The engine (`cargohold.drivers.cloud.engine`) owns everything else: the cache,
the manifest, the journal, retries, conflict naming and background write-back.
A backend only moves objects between the service and local files, and turns the
service's failures into the four typed errors below. It must be safe to call
from several threads at once (the engine runs ``concurrency`` transfers in
parallel on one backend instance).

Paths
    Every ``path`` is relative to the volume's remote root (the bucket's
    ``prefix`` or the share's ``directory``), uses ``/``, has no leading or
    trailing slash and is never empty. The backend adds and strips its root.

Versions
    ``version`` is the backend's opaque change token: the S3 ETag, the GCS
    generation (as text), the Azure Files ETag. The engine stores it in the
    manifest and hands it back as a precondition (`Expect`); it never parses it.
    Two different contents must never share a version.

Directories
    Object stores have no directories: an empty directory is a zero-byte marker
    object ``path + "/"``. `list` reports markers (and, for Azure Files, real
    directories) as entries with ``is_dir=True``; directories implied by a file's
    path need not be reported.

Content hash
    `put` records the SHA-256 of the content in the object's metadata under
    `HASH_KEY`; `head` reports it back as `RemoteEntry.sha256`. After a crash
    between a finished upload and the manifest update, the engine recognises its
    own upload by that hash instead of reporting a false conflict.

Crash-safe uploads
    `put` receives a `Checkpoint`: a small durable record in the engine's journal.
    A chunked upload saves there whatever it needs to resume (an S3 upload id and
    the parts done, a GCS resumable session URL, the Azure ranges written) after
    each chunk, and calls `Checkpoint.load` first to pick up a previous attempt
    after a crash. The object must never be visible with partial content: S3
    multipart and GCS resumable uploads only appear on completion; Azure Files,
    whose ranges land in place, writes a hidden temporary file and renames it
    over the target when whole (and never lists temporary files).

Errors
    Raise `PreconditionFailed` when an `Expect` does not hold, `RemoteNotFound`
    for a missing object (`ContainerNotFound` for a missing bucket or share),
    `AuthFailed` for rejected or missing credentials, `Transient` for anything
    worth retrying (5xx, throttling, dropped or refused connections, timeouts).
    Anything else is a `BackendError`. Messages must never contain a credential:
    build them from status codes and error codes, not from the SDK's repr of the
    request.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

#: Metadata key holding the hex SHA-256 of an object's content.
HASH_KEY = "cargohold-sha256"

#: Default size of one chunk of a chunked upload or ranged download (bytes).
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


class BackendError(Exception):
    """A backend failure the engine cannot fix by retrying. The message is safe to show."""


class PreconditionFailed(BackendError):
    """The remote object is not at the version an `Expect` named: someone else changed it."""


class RemoteNotFound(BackendError):
    """The remote object does not exist."""


class ContainerNotFound(RemoteNotFound):
    """The bucket or share itself does not exist."""


class AuthFailed(BackendError):
    """The service refused the credentials (wrong, expired, or missing)."""


class Transient(BackendError):
    """A failure worth retrying with backoff: 5xx, throttling, a dropped connection."""


@dataclass(frozen=True)
class RemoteEntry:
    """One object (or directory) under the volume's remote root."""

    path: str
    is_dir: bool
    size: int
    #: the opaque change token (S3 ETag, GCS generation, Azure ETag)
    version: str
    #: last modification time on the service, seconds since the epoch (0 if unknown)
    mtime: float = 0.0
    #: the `HASH_KEY` metadata; only `head` must fill it, `list` may leave None
    sha256: str | None = None


@dataclass(frozen=True)
class Expect:
    """The precondition of a write or delete.

    ``version`` set: the remote must be exactly at that version (S3 ``If-Match``,
    GCS ``if_generation_match``, Azure an ETag check under a lease).
    ``absent``: the remote must not exist (S3 ``If-None-Match: *``, GCS
    ``if_generation_match=0``). Neither: no condition (used for conflict copies,
    whose names are fresh, and for ``delete_remote``).
    """

    version: str | None = None
    absent: bool = False

    def __post_init__(self) -> None:
        if self.version is not None and self.absent:
            raise ValueError("an Expect cannot require both a version and absence")


#: No precondition.
ANY = Expect()
#: The object must not exist yet.
ABSENT = Expect(absent=True)


class Checkpoint(Protocol):
    """A durable scratch record for resuming one chunked upload after a crash."""

    def load(self) -> dict[str, Any] | None:
        """What the last `save` stored for this upload, or None for a fresh start."""

    def save(self, state: dict[str, Any]) -> None:
        """Store ``state`` (JSON-serialisable) durably; returns once it is on disk."""


class NullCheckpoint:
    """A checkpoint that remembers nothing (tests, one-shot tools)."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        pass


#: Called with the number of bytes just transferred, for progress reports.
Progress = Callable[[int], None]


def no_progress(_: int) -> None:
    pass


class Backend(abc.ABC):
    """One volume's remote root on one service (see the module docstring)."""

    #: chunk size for chunked uploads and ranged downloads; a backend may raise it
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data is, for messages and ``Status``: ``s3://bucket/prefix``.

        Never includes credentials or query strings that carry them (a SAS token).
        """

    @abc.abstractmethod
    def check(self) -> None:
        """Verify the container exists and the credentials work.

        Raise `ContainerNotFound` or `AuthFailed` (or `Transient`). A missing
        prefix or directory is not an error: it is an empty volume.
        """

    @abc.abstractmethod
    def make_container(self) -> None:
        """Create the bucket or share, and the prefix or directory; idempotent."""

    @abc.abstractmethod
    def list(self) -> Iterator[RemoteEntry]:
        """Every object and directory under the root, recursively, following every page.

        Objects still being uploaded (incomplete multipart or resumable uploads)
        must not appear.
        """

    @abc.abstractmethod
    def head(self, path: str) -> RemoteEntry | None:
        """The entry at ``path`` with its `RemoteEntry.sha256`, or None if there is none."""

    @abc.abstractmethod
    def get(
        self, path: str, *, version: str | None = None, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Stream bytes ``start`` to ``end`` (exclusive; None: to the end) of ``path``.

        With ``version``, raise `PreconditionFailed` if the object is no longer at
        that version (S3 ``If-Match``, GCS ``generation=``, Azure ETag), so that a
        file fetched in several ranges is never a mix of two versions.
        Raise `RemoteNotFound` if it is gone.
        """

    @abc.abstractmethod
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
        """Upload the file ``source`` (``size`` bytes) to ``path``; return the new version.

        Files over `chunk_size` go in chunks (up to ``parallel`` at once), resuming
        from ``checkpoint``. ``sha256`` goes into the metadata under `HASH_KEY`.
        Raise `PreconditionFailed` if ``expect`` does not hold, checked so that no
        concurrent write is overwritten; the object must stay at its old content
        when that happens. The engine does not change ``source`` during the call.
        """

    @abc.abstractmethod
    def make_dir(self, path: str, *, expect: Expect = ABSENT) -> str:
        """Create the (empty) directory ``path``; return its version.

        An object store writes the marker ``path + "/"``. An existing directory
        is not a `PreconditionFailed` on services with real directories.
        """

    @abc.abstractmethod
    def delete(self, path: str, *, expect: Expect = ANY, is_dir: bool = False) -> None:
        """Delete ``path`` (a directory: its marker, or the empty directory).

        Raise `PreconditionFailed` if ``expect.version`` is set and the object is
        at another version; a missing object is not an error (already deleted).
        """

    @abc.abstractmethod
    def delete_all(self) -> None:
        """Delete everything under the root and the root itself (``delete_remote``).

        Never the container: a bucket or share may hold other volumes.
        """

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections and thread pools."""


class BackendFactory(Protocol):
    """What each backend module exposes as ``open_backend``.

    ``volume`` is the volume's name, for messages; ``opts`` are the volume's
    options with secrets resolved (never stored or echoed). Raise
    `cargohold.core.InvalidArgument` for options that contradict each other.
    """

    def __call__(self, volume: str, opts: dict[str, Any]) -> Backend: ...
