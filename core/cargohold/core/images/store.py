"""The image store: images from archives, layers by digest, unpacked into snapshots.

Glossary
--------
image id
    The digest of the image's config JSON (``sha256:...``), as Docker's.
diff id
    The digest of one layer's *uncompressed* tar; the config lists them in
    ``rootfs.diff_ids``, bottom layer first.
chain id
    The identity of a stack of layers: the bottom layer's diff id, then
    ``sha256(chain_below + " " + diff_id)`` upwards (as Docker and
    containerd). An unpacked layer is the committed snapshot named by its
    chain id, so images sharing lower layers share their snapshots.
reference
    ``name[:tag]``, tag ``latest`` if left out, in Docker's short form
    (``docker.io/library/`` dropped); or an image id, or a unique prefix of one.

Layout under ``<state>/images``: ``blobs/sha256/<hex>`` holds each layer as
an uncompressed tar under its diff id (written once, verified on the way
in); ``images.db`` (SQLite) holds image configs (the exact bytes, so ids stay
stable), tags, the layers of each image and the holders of each image
(containers, which keep an image from being removed). Every change is
staged under ``tmp/`` and becomes visible in one transaction: a failed load
leaves no blob, no image record and no tag.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import re
import sqlite3
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from cargohold.core.api.clock import utc_now
from cargohold.core.api.errors import (
    CargoholdError,
    Conflict,
    InvalidArgument,
    NotFound,
)
from cargohold.core.api.logs import get_logger
from cargohold.core.images.config import (
    apply_changes,
    chain_ids,
    dump_config,
    new_config,
    normalize_reference,
)
from cargohold.core.images.records import Image
from cargohold.core.snapshots.service import Snapshotter
from cargohold.core.state.database import Database
from cargohold.core.state.image_store import ImageDatabase

if TYPE_CHECKING:
    from cargohold.core.images.archives import SavedImage
    from cargohold.core.images.ingest import Ingest, Staging

# Archives, layer tars and staging (archives, layers, ingest: tarfile, gzip) are imported by
# the methods that read or write them: running a container from an unpacked
# image needs none of them.

__all__ = ["ImageStore", "chain_ids", "normalize_reference"]

log = get_logger(__name__)

# told the size of each chunk of bytes an image command moves (see cargohold.core.progress)
Progress = Callable[[int], None]


# -- the store ---------------------------------------------------------------


class ImageStore:
    """Images, their layers and tags under ``root``; see the module docstring.

    ``snapshotters`` (the runtime's `SnapshotterRegistry`) lets `remove`
    drop unpacked layers no image needs any more.
    """

    def __init__(self, root: Path, snapshotters: Any = None) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self._snapshotters = snapshotters
        self._database: Database | None = None

    # -- plumbing ------------------------------------------------------------

    def _setup(self) -> Database:
        """Create the directories and the database on first use."""
        if self._database is None:
            self.blobs.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(mode=0o700, exist_ok=True)
            self._database = ImageDatabase(self.root / "images.db")
        return self._database

    def _db(self) -> sqlite3.Connection:
        return self._setup().connection()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._setup().transaction()

    @contextlib.contextmanager
    def _locked(self, name: str = "store") -> Iterator[None]:
        """An flock across processes: one writer of the store (or of one unpack) at a time."""
        self._setup()
        locks = self.root / "locks"
        locks.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(locks / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Staging]:
        """A fresh staging area. Callers hold the store lock, so any other is a crash's."""
        import shutil
        import tempfile  # loading images needs these; running one (every run) does not

        from cargohold.core.images.ingest import Staging

        self._setup()
        self._remove_leftovers()
        path = Path(tempfile.mkdtemp(prefix="stage-", dir=self.root / "tmp"))
        try:
            yield Staging(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _remove_leftovers(self) -> None:
        """Delete what a crash mid-load left: staging areas and blobs no row names."""
        import shutil

        for stale in (self.root / "tmp").glob("stage-*"):
            shutil.rmtree(stale, ignore_errors=True)
        rows = self._db().execute("SELECT diff_id FROM layers")
        known = {diff_id.removeprefix("sha256:") for (diff_id,) in rows}
        for blob in self.blobs.iterdir():
            if blob.name not in known:
                log.info("removing layer blob %s that no image names (left by a crash)", blob)
                blob.unlink(missing_ok=True)

    def close(self) -> None:
        if self._database is not None:
            self._database.close()

    @contextlib.contextmanager
    def ingest(self) -> Iterator[Ingest]:
        """Stage layers and images from elsewhere; all become visible together when
        the block ends, none if it raises (``Ingest.images`` then holds them)."""
        from cargohold.core.images.ingest import Ingest

        with self._locked(), self._staging() as staging:
            ingest = Ingest(self, staging)
            yield ingest
            ingest.images = self._commit(staging)

    def config_bytes(self, ref: str) -> bytes:
        """The exact config JSON of an image (its id is their digest)."""
        db = self._db()
        row = db.execute("SELECT config FROM images WHERE id = ?", (self._resolve(db, ref),))
        return bytes(row.fetchone()[0])

    def layer_path(self, diff_id: str) -> Path:
        """The uncompressed tar of layer ``diff_id``; `NotFound` if the store lacks it."""
        from cargohold.core.images.archives import DIGEST

        match = DIGEST.fullmatch(diff_id)
        if match is None:
            raise InvalidArgument(f"{diff_id!r} is not a sha256 digest")
        path = self.blobs / match.group(1)
        if not path.is_file():
            raise NotFound(f"layer {diff_id} is not in the image store; load its image again")
        return path

    # -- reading -------------------------------------------------------------

    def _image(self, db: sqlite3.Connection, image_id: str) -> Image:
        row = db.execute(
            "SELECT config, created, size FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no such image: {image_id}")
        tags = tuple(
            ref
            for (ref,) in db.execute(
                "SELECT ref FROM tags WHERE image = ? ORDER BY ref", (image_id,)
            )
        )
        holders = tuple(
            h
            for (h,) in db.execute(
                "SELECT holder FROM holders WHERE image = ? ORDER BY holder", (image_id,)
            )
        )
        return Image(image_id, tags, json.loads(row[0]), row[1], row[2], holders)

    def _resolve(self, db: sqlite3.Connection, ref: str) -> str:
        """The image id ``ref`` names (a tag, an id or a unique id prefix)."""
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidArgument("give an image reference: name[:tag] or an image id")
        text = ref.strip()
        hex_part = text.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{1,64}", hex_part):
            rows = db.execute(
                "SELECT id FROM images WHERE id LIKE ? LIMIT 2", (f"sha256:{hex_part}%",)
            ).fetchall()
            if len(rows) > 1 and len(hex_part) < 64:
                raise Conflict(f"image id prefix {text!r} is ambiguous: give more characters")
            if rows:
                return str(rows[0][0])
            if text.startswith("sha256:"):
                raise NotFound(f"no such image: {text}")
        try:
            normal = normalize_reference(text)
        except InvalidArgument:
            raise NotFound(f"no such image: {text}") from None
        row = db.execute("SELECT image FROM tags WHERE ref = ?", (normal,)).fetchone()
        if row is None:
            raise NotFound(
                f"no such image: {normal}; load it with 'cargohold image load -i FILE' "
                "or import a rootfs with 'cargohold image import'"
            )
        return str(row[0])

    def get(self, ref: str) -> Image:
        """The image ``ref`` names; `NotFound` if none."""
        db = self._db()
        return self._image(db, self._resolve(db, ref))

    def list(self) -> builtins.list[Image]:
        """Every image, newest first."""
        db = self._db()
        ids = [i for (i,) in db.execute("SELECT id FROM images ORDER BY created DESC, id")]
        return [self._image(db, i) for i in ids]

    # -- holders (containers) -------------------------------------------------

    def hold(self, ref: str, holder: str) -> Image:
        """Record that ``holder`` (a container id) uses the image; it cannot be removed."""
        with self._locked(), self._transaction() as db:
            image_id = self._resolve(db, ref)
            db.execute(
                "INSERT OR IGNORE INTO holders (image, holder) VALUES (?, ?)", (image_id, holder)
            )
            return self._image(db, image_id)

    def release(self, image_id: str, holder: str) -> None:
        """Forget ``holder``'s use of the image (no error if it held nothing)."""
        with self._transaction() as db:
            db.execute("DELETE FROM holders WHERE image = ? AND holder = ?", (image_id, holder))

    # -- ingest ----------------------------------------------------------------

    def _commit(self, staging: Staging) -> builtins.list[Image]:
        """Make staged layers and images visible, all or nothing."""
        import hashlib

        added: builtins.list[Path] = []
        try:
            with self._transaction() as db:
                for diff_id, (path, size) in staging.layers.items():
                    blob = self.blobs / diff_id.removeprefix("sha256:")
                    known = db.execute("SELECT 1 FROM layers WHERE diff_id = ?", (diff_id,))
                    if known.fetchone() is None:
                        os.replace(path, blob)
                        added.append(blob)
                        db.execute(
                            "INSERT INTO layers (diff_id, size) VALUES (?, ?)", (diff_id, size)
                        )
                ids: builtins.list[str] = []
                for staged in staging.images:
                    image_id = f"sha256:{hashlib.sha256(staged.config).hexdigest()}"
                    size = sum(staging.layers[d][1] for d in set(staged.diff_ids))
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO images (id, config, created, size)"
                        " VALUES (?, ?, ?, ?)",
                        (image_id, staged.config, utc_now(), size),
                    )
                    if cursor.rowcount:
                        db.executemany(
                            "INSERT INTO image_layers (image, position, diff_id) VALUES (?, ?, ?)",
                            list(
                                zip(
                                    [image_id] * len(staged.diff_ids),
                                    range(len(staged.diff_ids)),
                                    staged.diff_ids,
                                    strict=True,
                                )
                            ),
                        )
                    for tag in staged.tags:
                        db.execute(
                            "INSERT INTO tags (ref, image) VALUES (?, ?)"
                            " ON CONFLICT (ref) DO UPDATE SET image = excluded.image",
                            (tag, image_id),
                        )
                    ids.append(image_id)
                return [self._image(db, i) for i in ids]
        except BaseException:
            for blob in added:
                blob.unlink(missing_ok=True)
            raise

    def load(self, path: str | Path, progress: Progress | None = None) -> builtins.list[Image]:
        """Load a ``docker save`` archive, an OCI archive or an OCI layout directory.

        Every blob's digest and every layer's diff id is checked; any
        mismatch, missing file or corrupt data raises `InvalidArgument` and
        leaves the store as it was. ``progress`` is told each chunk of layer
        bytes read.
        """
        from cargohold.core.images.archives import Hashing, Source, check_layer_digest, read_archive
        from cargohold.core.images.ingest import StagedImage, stage_layer
        from cargohold.core.images.layers import LayerError

        path = Path(path)
        if not path.exists():
            raise NotFound(f"image archive {path} does not exist")
        with self._locked(), self._staging() as staging:
            source = Source(path)
            try:
                for found in read_archive(source):
                    for item in found.layers:
                        with source.open(item.name) as stream:
                            hashing = Hashing(stream)
                            stage_layer(
                                staging, hashing, item.diff_id, f"layer {item.name}", progress
                            )
                            hashing.drain()
                        check_layer_digest(item, hashing.digest)
                    staging.images.append(StagedImage(found.config, found.diff_ids, found.tags))
            except LayerError as err:
                raise InvalidArgument(f"{path}: {err}") from None
            finally:
                source.close()
            return self._commit(staging)

    def import_rootfs(
        self,
        path: str | Path,
        ref: str | None = None,
        *,
        changes: Sequence[str] = (),
        message: str = "",
        progress: Progress | None = None,
    ) -> Image:
        """Make a one-layer image from a root filesystem tarball (plain or gzip).

        ``path`` ``-`` reads standard input. ``changes`` are Dockerfile-like
        instructions (``CMD``, ``ENTRYPOINT``, ``ENV``, ``WORKDIR``, ``USER``,
        ``VOLUME``, ``LABEL``), as ``docker import --change``. ``progress`` is
        told each chunk read.
        """
        from cargohold.core.images.ingest import StagedImage, stage_layer

        tag = normalize_reference(ref) if ref else None
        run_config = apply_changes({}, changes)
        with self._locked(), self._staging() as staging:
            if str(path) == "-":
                diff_id = stage_layer(staging, sys.stdin.buffer, None, "standard input", progress)
            else:
                source_path = Path(path)
                if not source_path.is_file():
                    raise NotFound(f"rootfs tarball {path} does not exist")
                with open(source_path, "rb") as f:
                    diff_id = stage_layer(staging, f, None, f"rootfs tarball {path}", progress)
            config = new_config(run_config, [diff_id], created_by="cargohold image import")
            if message:
                config["comment"] = message
                config["history"][-1]["comment"] = message
            staging.images.append(StagedImage(dump_config(config), [diff_id], [tag] if tag else []))
            (image,) = self._commit(staging)
            return image

    def create_image(
        self,
        base: Image | None,
        layer: Path | None,
        *,
        ref: str | None = None,
        changes: Sequence[str] = (),
        run_config: Mapping[str, Any] | None = None,
        comment: str = "",
        author: str = "",
        created_by: str = "",
    ) -> Image:
        """A new image: ``base``'s layers plus ``layer`` (an uncompressed tar diff, or None).

        ``run_config`` replaces the base's ``config`` section when given
        (``docker commit`` saves the container's); ``changes`` apply on top.
        For ``cargohold commit``; the tar may hold whiteouts.
        """
        from cargohold.core.images.ingest import StagedImage, stage_layer

        tag = normalize_reference(ref) if ref else None
        with self._locked(), self._staging() as staging:
            diff_ids = list(base.diff_ids) if base else []
            for diff_id in diff_ids:
                staging.layers[diff_id] = (
                    self.layer_path(diff_id),
                    self.layer_path(diff_id).stat().st_size,
                )
            if layer is not None:
                with open(layer, "rb") as f:
                    diff_id = stage_layer(staging, f, None, f"layer {layer}")
                diff_ids.append(diff_id)
            base_run = dict(
                run_config if run_config is not None else (base.run_config if base else {})
            )
            config = new_config(
                apply_changes(base_run, changes),
                diff_ids,
                created_by=created_by or "cargohold commit",
                base=base.config if base else None,
            )
            if comment:
                config["comment"] = comment
            if author:
                config["author"] = author
            staging.images.append(StagedImage(dump_config(config), diff_ids, [tag] if tag else []))
            (image,) = self._commit(staging)
            return image

    # -- tags and removal -----------------------------------------------------

    def tag(self, source: str, target: str) -> Image:
        """Give image ``source`` the reference ``target`` (moved from any other image)."""
        normal = normalize_reference(target)
        with self._locked(), self._transaction() as db:
            image_id = self._resolve(db, source)
            db.execute(
                "INSERT INTO tags (ref, image) VALUES (?, ?)"
                " ON CONFLICT (ref) DO UPDATE SET image = excluded.image",
                (normal, image_id),
            )
            return self._image(db, image_id)

    def remove(self, ref: str, *, force: bool = False) -> builtins.list[tuple[str, str]]:
        """Untag, and delete the image once no tag is left, as ``docker rmi``.

        Returns ``("Untagged", ref)`` and ``("Deleted", id)`` pairs. Refuses
        (`Conflict`) an image a container holds, and removing by id an image
        with several tags unless ``force``.
        """
        report: builtins.list[tuple[str, str]] = []
        with self._locked():
            with self._transaction() as db:
                image_id = self._resolve(db, ref)
                image = self._image(db, image_id)
                if image.holders:
                    raise Conflict(
                        f"unable to remove image {ref}: it is used by container "
                        f"{', '.join(h[:12] for h in image.holders)}; remove the container first"
                    )
                by_tag = ref.strip().removeprefix("sha256:") not in image_id
                untag: builtins.list[str]
                if by_tag:
                    untag = [normalize_reference(ref)]
                else:
                    if len(image.repo_tags) > 1 and not force:
                        raise Conflict(
                            f"unable to delete {image.short_id} (must be forced): the image "
                            f"is referenced by {len(image.repo_tags)} tags; remove by tag or "
                            "use --force"
                        )
                    untag = list(image.repo_tags)
                for tag in untag:
                    db.execute("DELETE FROM tags WHERE ref = ?", (tag,))
                    report.append(("Untagged", tag))
                remaining = db.execute("SELECT 1 FROM tags WHERE image = ?", (image_id,))
                if remaining.fetchone() is not None:
                    return report
                db.execute("DELETE FROM images WHERE id = ?", (image_id,))
                orphans = [
                    d
                    for (d,) in db.execute(
                        "SELECT diff_id FROM layers WHERE diff_id NOT IN"
                        " (SELECT diff_id FROM image_layers)"
                    )
                ]
                db.executemany("DELETE FROM layers WHERE diff_id = ?", [(d,) for d in orphans])
                report.append(("Deleted", image_id))
            for diff_id in orphans:
                (self.blobs / diff_id.removeprefix("sha256:")).unlink(missing_ok=True)
            self._drop_snapshots(image)
        return report

    def _drop_snapshots(self, image: Image) -> None:
        """Remove unpacked layers of ``image`` no remaining image needs (best effort)."""
        if self._snapshotters is None or not image.diff_ids:
            return
        needed: set[str] = set()
        for other in self.list():
            needed.update(other.chain_ids())
        for name in self._snapshotters.names():
            try:
                snapshotter = self._snapshotters.get(name)
            except CargoholdError:
                continue
            for chain in reversed(image.chain_ids()):
                if chain in needed or not snapshotter.exists(chain):
                    continue
                try:
                    snapshotter.remove(chain)
                except CargoholdError as err:
                    log.info("kept unpacked layer %s in %s: %s", chain, name, err)
                    break

    # -- save ----------------------------------------------------------------

    def save(
        self, refs: Sequence[str], output: str | Path | IO[bytes], progress: Progress | None = None
    ) -> None:
        """Write images as a docker-archive that ``docker load`` accepts.

        ``output`` is a path (written to a temporary file, then renamed) or a
        binary stream. ``progress`` is told each chunk written.
        """
        from cargohold.core.images.archives import CountedWriter, write_docker_archive

        def sink(raw: IO[bytes]) -> IO[bytes]:
            return raw if progress is None else cast(IO[bytes], CountedWriter(raw, progress))

        if not refs:
            raise InvalidArgument("name at least one image to save")
        db = self._db()
        chosen: dict[str, builtins.list[str]] = {}
        for ref in refs:
            image_id = self._resolve(db, ref)
            tags = chosen.setdefault(image_id, [])
            if ref.strip().removeprefix("sha256:") not in image_id:
                normal = normalize_reference(ref)
                if normal not in tags:
                    tags.append(normal)
        if isinstance(output, str | Path):
            target = Path(output)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                with open(tmp, "wb") as out:
                    write_docker_archive(sink(out), self._saved(db, chosen), self.layer_path)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            write_docker_archive(sink(output), self._saved(db, chosen), self.layer_path)

    def _saved(
        self, db: sqlite3.Connection, chosen: Mapping[str, builtins.list[str]]
    ) -> builtins.list[SavedImage]:
        from cargohold.core.images.archives import SavedImage

        saved = []
        for image_id, tags in chosen.items():
            (config,) = db.execute("SELECT config FROM images WHERE id = ?", (image_id,)).fetchone()
            diff_ids = self._image(db, image_id).diff_ids
            saved.append(SavedImage(image_id, config, diff_ids, tags))
        return saved

    # -- unpacking into snapshots ----------------------------------------------

    def unpacked_chain(self, image: Image, snapshotter: Snapshotter) -> str | None:
        """Unpack ``image``'s layers into ``snapshotter``; the top layer's key (see `unpack`)."""
        from cargohold.core.images.unpack import unpacked_chain

        return unpacked_chain(self, image, snapshotter)
