"""``/volumes`` routes: ``docker volume create|ls|inspect|rm|prune``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, request

from cargohold.core.api.errors import CargoholdError, InvalidArgument
from cargohold.core.volumes.filters import LIST_FILTERS, PRUNE_FILTERS
from cargohold.plugins import shapes
from cargohold.plugins.engine.wire import answer, api_version, filters, flag
from cargohold.plugins.http.bodies import parse_json_object, string_map

if TYPE_CHECKING:
    from cargohold.core.runtime import Runtime

#: From this version on, prune removes only anonymous volumes unless ``all=true``.
PRUNE_ALL_SINCE = (1, 42)


def register(app: Flask, rt: Runtime) -> None:
    @app.route("/volumes", methods=["GET"])
    def volume_list() -> Response:
        volumes = rt.volumes.list(filters(LIST_FILTERS))
        return answer({"Volumes": [shapes.volume(v) for v in volumes], "Warnings": None})

    @app.route("/volumes/create", methods=["POST"])
    def volume_create() -> Response:
        body = parse_json_object(request.get_data(cache=False))
        name = body.get("Name") or None
        driver = body.get("Driver") or "local"
        if not isinstance(driver, str) or (name is not None and not isinstance(name, str)):
            raise InvalidArgument("Name and Driver must be strings")
        opts = string_map(body.get("DriverOpts"), "DriverOpts")
        labels = string_map(body.get("Labels"), "Labels")
        return answer(shapes.volume(rt.volumes.create(name, driver, opts, labels)), 201)

    @app.route("/volumes/<name>", methods=["GET"])
    def volume_inspect(name: str) -> Response:
        return answer(shapes.volume(rt.volumes.get(name)))

    @app.route("/volumes/<name>", methods=["DELETE"])
    def volume_remove(name: str) -> Response:
        force = flag("force")
        try:
            rt.volumes.get(name)
        except CargoholdError:
            if force:
                return Response(status=204)
            raise
        rt.volumes.remove(name, force=force)
        return Response(status=204)

    @app.route("/volumes/prune", methods=["POST"])
    def volume_prune() -> Response:
        chosen = filters(PRUNE_FILTERS)
        if api_version() < PRUNE_ALL_SINCE:
            chosen["all"] = {"true"}  # older clients pruned named volumes too
        report = rt.volumes.prune(chosen)
        return answer({"VolumesDeleted": report.removed, "SpaceReclaimed": report.space_reclaimed})
