"""``/images`` routes: ``docker images|inspect|rmi|tag|load|save|import``.

Archives arrive and leave as request and response bodies; they are spooled
through a file under the state directory, since the image store reads and
writes paths (and checks every digest before anything is kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response, request

from cargohold.core.api.errors import InvalidArgument
from cargohold.plugins import shapes
from cargohold.plugins.engine.wire import answer, flag

if TYPE_CHECKING:
    from cargohold.core.runtime import Runtime


def register(app: Flask, rt: Runtime) -> None:
    spool_dir = rt.state_dir / "images"

    @contextlib.contextmanager
    def spooled() -> Iterator[Path]:
        """The request body (an archive, any size) in a file, removed afterwards."""
        request.max_content_length = (
            1 << 62
        )  # archives are as large as they are (None: the app limit)
        spool_dir.mkdir(mode=0o700, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar", dir=spool_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(request.stream, out, 1 << 20)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    @app.route("/images/json", methods=["GET"])
    def image_list() -> Response:
        return answer([shapes.image_summary(image) for image in rt.images.list()])

    @app.route("/images/<path:ref>/json", methods=["GET"])
    def image_inspect(ref: str) -> Response:
        return answer(shapes.image_inspect(rt.images.get(ref)))

    @app.route("/images/<path:ref>", methods=["DELETE"])
    def image_remove(ref: str) -> Response:
        done = rt.images.remove(ref, force=flag("force"))
        return answer([{kind: what} for kind, what in done])

    @app.route("/images/<path:ref>/tag", methods=["POST"])
    def image_tag(ref: str) -> Response:
        repo, tag = request.args.get("repo", ""), request.args.get("tag", "")
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        rt.images.tag(ref, f"{repo}:{tag}" if tag else repo)
        return Response(status=201)

    @app.route("/images/load", methods=["POST"])
    def image_load() -> Response:
        with spooled() as path:
            loaded = rt.images.load(path)
        lines = []
        for image in loaded:
            names = list(image.repo_tags) or [image.id]
            prefix = "Loaded image: " if image.repo_tags else "Loaded image ID: "
            lines += [{"stream": f"{prefix}{name}\n"} for name in names]
        body = "".join(json.dumps(line) + "\n" for line in lines)
        return Response(body, 200, content_type="application/json")

    @app.route("/images/create", methods=["POST"])
    def image_create() -> Response:
        source = request.args.get("fromSrc")
        if source is None:
            image = request.args.get("fromImage", "")
            raise InvalidArgument(
                f"pull access denied for {image}: cargohold pulls no images here; "
                "docker load or docker import it instead"
            )
        if source != "-":
            raise InvalidArgument("only fromSrc=- (the request body) is supported")
        repo, tag = request.args.get("repo", ""), request.args.get("tag", "")
        ref = f"{repo}:{tag}" if repo and tag else (repo or None)
        with spooled() as path:
            made = rt.images.import_rootfs(
                path,
                ref,
                changes=request.args.getlist("changes"),
                message=request.args.get("message", ""),
            )
        return Response(
            json.dumps({"status": made.id}) + "\n", 200, content_type="application/json"
        )

    def save(refs: list[str]) -> Response:
        spool_dir.mkdir(mode=0o700, exist_ok=True)
        handle = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 (closed by the stream)
        try:
            rt.images.save(refs, handle)
        except BaseException:
            handle.close()
            raise
        handle.seek(0)

        def body() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(1 << 20):
                    yield chunk

        return Response(body(), 200, content_type="application/x-tar")

    @app.route("/images/get", methods=["GET"])
    def image_save_many() -> Response:
        return save(request.args.getlist("names"))

    @app.route("/images/<path:ref>/get", methods=["GET"])
    def image_save(ref: str) -> Response:
        return save([ref])
