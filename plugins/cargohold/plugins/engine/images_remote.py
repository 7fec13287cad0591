"""Registry and build routes: ``docker pull|push|login`` and ``DOCKER_BUILDKIT=0 docker build``.

``POST /images/create?fromImage=`` pulls (``fromSrc`` imports stay with
`images`), ``POST /images/{name}/push`` pushes, ``POST /auth`` checks a login
(the docker CLI keeps it and sends it back base64-encoded in
``X-Registry-Auth``), ``POST /build`` takes the context as a tar body and
runs the classic builder. Each answers with docker's stream of JSON
messages (``status``/``id``/``progressDetail``, ``stream``, ``aux``, and
``errorDetail`` for a failure after the stream began); the work runs in a
thread that feeds the stream.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import queue
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from flask import Flask, Response, request

from cargohold.core.api.errors import CargoholdError, InvalidArgument
from cargohold.core.images.distribution import Credentials
from cargohold.core.images.layer_progress import LayerProgress
from cargohold.plugins.engine.wire import answer, flag

if TYPE_CHECKING:
    from cargohold.core.images.build.builder import BuildOptions
    from cargohold.core.runtime import Runtime

_DONE = object()


class _Events:
    """Messages from the worker thread to the response stream."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()

    def put(self, message: dict[str, Any]) -> None:
        self.queue.put(message)

    def stream(self) -> Iterator[bytes]:
        while (item := self.queue.get()) is not _DONE:
            yield (json.dumps(item) + "\r\n").encode()


class _JsonProgress(LayerProgress):
    """`LayerProgress` as the Engine API's JSON progress messages."""

    def __init__(self, events: _Events) -> None:
        super().__init__(io.StringIO(), quiet=False)
        self.events = events
        self.tty = True  # so that transfers are reported (as progressDetail)

    def message(self, text: str) -> None:
        self.events.put({"status": text})

    def status(self, layer: str, text: str) -> None:
        self.events.put({"status": text, "progressDetail": {}, "id": layer})

    def transfer(self, layer: str, action: str, done: int, total: int | None) -> None:
        detail = {"current": done, "total": total} if total else {"current": done}
        self.events.put({"status": action, "progressDetail": detail, "id": layer})


class _StreamText(io.TextIOBase):
    """A text stream whose writes become ``{"stream": ...}`` messages (build output)."""

    def __init__(self, events: _Events) -> None:
        self.events = events

    def write(self, text: str) -> int:
        if text:
            self.events.put({"stream": text})
        return len(text)


def _credentials() -> Credentials | None:
    """The login the docker CLI sends in ``X-Registry-Auth`` (base64url JSON), if any."""
    header = request.headers.get("X-Registry-Auth", "")
    if not header:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidArgument("X-Registry-Auth is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        return None
    user, password = data.get("username") or "", data.get("password") or ""
    if not user and data.get("auth"):
        user, _, password = base64.b64decode(str(data["auth"])).decode().partition(":")
    return Credentials(str(user), str(password)) if user and password else None


def _streamed(work: Callable[[_Events], None]) -> Response:
    """Run ``work`` in a thread; answer with the messages it sends, then its error if any."""
    events = _Events()

    def run() -> None:
        try:
            work(events)
        except (CargoholdError, OSError) as err:
            events.put({"errorDetail": {"message": str(err)}, "error": str(err)})
        finally:
            events.queue.put(_DONE)

    threading.Thread(target=run, name="engine-registry", daemon=True).start()
    return Response(events.stream(), 200, content_type="application/json")


def register(app: Flask, rt: Runtime) -> None:
    """Add the routes; call after `images.register`, whose ``/images/create`` this extends."""
    imported = app.view_functions.get("image_create")

    def pull_or_import() -> Response:
        if request.args.get("fromSrc") is not None and imported is not None:
            return cast(Response, imported())
        image = request.args.get("fromImage", "")
        if not image:
            raise InvalidArgument("give fromImage (to pull) or fromSrc (to import)")
        tag = request.args.get("tag", "")
        ref = image
        if tag:  # docker pull NAME:TAG sends the tag apart; NAME@DIGEST sends it as a tag
            ref += f"@{tag}" if tag.startswith("sha256:") else f":{tag}"
        credentials = _credentials()
        platform = request.args.get("platform") or None

        def work(events: _Events) -> None:
            from cargohold.core.images.pull import pull

            pull(
                rt.state_dir,
                rt.images,
                ref,
                platform=platform,
                progress=_JsonProgress(events),
                credentials=credentials,
            )

        return _streamed(work)

    if imported is not None:
        app.view_functions["image_create"] = pull_or_import
    else:
        app.add_url_rule("/images/create", "image_create", pull_or_import, methods=["POST"])

    @app.route("/images/<path:name>/push", methods=["POST"])
    def image_push(name: str) -> Response:
        tag = request.args.get("tag", "")
        ref = f"{name}:{tag}" if tag else name
        credentials = _credentials()

        def work(events: _Events) -> None:
            from cargohold.core.images.push import push

            result = push(
                rt.state_dir,
                rt.images,
                ref,
                progress=_JsonProgress(events),
                credentials=credentials,
            )
            aux = {"Tag": result.reference.tag or "latest", "Digest": result.digest}
            events.put({"progressDetail": {}, "aux": {**aux, "Size": result.size}})

        return _streamed(work)

    @app.route("/auth", methods=["POST"])
    def auth() -> Response:
        from cargohold.core.images.credentials import normalize_host, open_registry

        body = request.get_json(silent=True) or {}
        user, password = str(body.get("username") or ""), str(body.get("password") or "")
        if not user or not password:
            raise InvalidArgument("give a username and a password")
        host = normalize_host(str(body.get("serveraddress") or "docker.io"))
        client = open_registry(rt.state_dir, host, credentials=Credentials(user, password))
        try:
            client.check()
        finally:
            client.close()
        return answer({"Status": "Login Succeeded", "IdentityToken": ""})

    @app.route("/build", methods=["POST"])
    def build() -> Response:
        work_dir = Path(tempfile.mkdtemp(prefix="build-", dir=rt.state_dir / "images" / "tmp"))
        try:
            context = _unpack_context(work_dir)
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        options = _build_options(context)

        def work(events: _Events) -> None:
            from cargohold.core.images.build.builder import build

            try:
                image = build(
                    rt, dataclasses.replace(options, out=cast(TextIO, _StreamText(events)))
                )
                events.put({"aux": {"ID": image.id}})
                if options.quiet:
                    events.put({"stream": image.id + "\n"})
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)

        return _streamed(work)


def _unpack_context(work_dir: Path) -> Path:
    """The request body (a tar, maybe compressed) unpacked under ``work_dir``, safely."""
    request.max_content_length = 1 << 62  # a context is as large as it is
    archive = work_dir / "context.tar"
    with open(archive, "wb") as out:
        shutil.copyfileobj(request.stream, out, 1 << 20)
    context = work_dir / "context"
    context.mkdir()
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(context, filter="tar")  # nothing outside the context
    except (tarfile.TarError, OSError) as err:
        raise InvalidArgument(f"the build context is not a valid tar archive: {err}") from None
    finally:
        archive.unlink(missing_ok=True)
    return context


def _build_options(context: Path) -> BuildOptions:
    from cargohold.core.images.build.builder import BuildOptions

    try:
        build_args = json.loads(request.args.get("buildargs") or "{}")
    except ValueError:
        raise InvalidArgument("buildargs is not JSON") from None
    if not isinstance(build_args, dict):
        raise InvalidArgument("buildargs must be a JSON object")
    dockerfile = request.args.get("dockerfile") or "Dockerfile"
    if dockerfile.startswith("/") or ".." in Path(dockerfile).parts:
        raise InvalidArgument(f"the Dockerfile {dockerfile} must be inside the context")
    return BuildOptions(
        context=str(context),
        dockerfile=str(context / dockerfile),
        tags=tuple(request.args.getlist("t")),
        build_args={str(k): str(v) for k, v in build_args.items() if v is not None},
        no_cache=flag("nocache"),
        quiet=flag("q"),
        platform=request.args.get("platform") or None,
    )
