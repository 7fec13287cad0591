"""The same Dockerfile built by ``docker build`` (classic builder) and ``cargohold build``."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..realdocker import DockerEngine
from ..registry.conftest import cargohold, ok

pytestmark = pytest.mark.root

DOCKERFILE = """\
# a file deleted in a later step, a directory replaced, COPY --chown, an ENV used by RUN
FROM {base}
ARG GREETING=hello
ENV TARGET=/opt/app WHO="a user"
COPY files/ /opt/app/
COPY --chown=1234:5678 owned.txt /opt/app/owned.txt
RUN mkdir -p /opt/app/dir && echo "$GREETING $WHO" > $TARGET/dir/greeting \\
    && echo tmp > /opt/app/later-deleted
COPY data /opt/app/replaced
RUN rm /opt/app/later-deleted && rm -rf /opt/app/replaced && echo now-a-file > /opt/app/replaced
WORKDIR work/here
LABEL team=storage
CMD ["sh"]
"""
STEPS = 11
LISTING = (
    "find /opt -exec busybox stat -c '%n %u:%g %a %F %s' {} \\; | busybox sort;"
    " cat /opt/app/dir/greeting /opt/app/replaced; pwd; echo $TARGET"
)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "context"
    (ctx / "files" / "sub").mkdir(parents=True)
    (ctx / "files" / "a.txt").write_text("alpha\n")
    (ctx / "files" / "sub" / "b.sh").write_text("#!/bin/sh\necho b\n")
    (ctx / "files" / "sub" / "b.sh").chmod(0o755)
    (ctx / "files" / "notes.tmp").write_text("ignored\n")
    (ctx / "files" / "link").symlink_to("a.txt")
    (ctx / "owned.txt").write_text("mine\n")
    (ctx / "data").mkdir()
    (ctx / "data" / "x").write_text("x\n")
    (ctx / ".dockerignore").write_text("**/*.tmp\n")
    return ctx


@pytest.fixture
def engine_base(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """The engine's busybox image, loaded into a cargohold state directory too."""
    state = tmp_path / "state"
    archive = tmp_path / "base.tar"
    docker_engine.docker("save", "-o", str(archive), busybox_image)
    ok(cargohold("load", "-i", str(archive), state=state))
    yield busybox_image, state


def _docker_build(engine: DockerEngine, context: Path, tag: str) -> str:
    result = subprocess.run(
        ["docker", "build", "-t", tag, str(context)],
        env={**engine.env, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_same_filesystem_as_docker_build_and_cache(
    docker_engine: DockerEngine, engine_base: tuple[str, Path], context: Path
) -> None:
    base, state = engine_base
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    tag = "cargohold-build-cmp:1"
    try:
        docker_out = _docker_build(docker_engine, context, tag)
        ours = ok(cargohold("build", "-t", tag, str(context), state=state))
        for number in range(1, STEPS + 1):
            assert f"Step {number}/{STEPS} : " in ours
        assert re.search(r"^Successfully built [0-9a-f]{12}$", ours, re.M)
        assert f"Successfully tagged {tag}" in ours
        # the step lines are docker's, word for word
        steps = [line for line in ours.splitlines() if line.startswith("Step ")]
        assert steps == [line for line in docker_out.splitlines() if line.startswith("Step ")]

        expected = docker_docker(docker_engine, tag)
        assert ok(cargohold("run", "--rm", tag, "sh", "-c", LISTING, state=state)) == expected
        assert "1234:5678 644 regular file 5" in expected  # the COPY --chown, as docker made it

        again = ok(cargohold("build", "-t", tag, str(context), state=state))
        assert again.count(" ---> Using cache") == STEPS - 1  # every step but FROM
        assert "Running in" not in again

        (context / "data" / "x").write_text("changed\n")  # step 7 copies it
        changed = ok(cargohold("build", "-t", tag, str(context), state=state))
        hits = [n for n, part in enumerate(changed.split("Step ")[1:], 1) if "Using cache" in part]
        assert hits == [2, 3, 4, 5, 6]

        fresh = ok(cargohold("build", "--no-cache", "-q", "-t", tag, str(context), state=state))
        assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", fresh)
    finally:
        docker_engine.docker("rmi", "-f", tag, check=False)


def docker_docker(engine: DockerEngine, tag: str) -> str:
    return engine.docker("run", "--rm", "--network", "none", tag, "sh", "-c", LISTING).stdout


def test_build_args_reach_run_but_not_the_image(
    engine_base: tuple[str, Path], tmp_path: Path
) -> None:
    _, state = engine_base
    ctx = tmp_path / "args"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {engine_base[0]}\nARG FLAVOUR=plain\nRUN echo $FLAVOUR > /flavour\n"
    )
    out = ok(
        cargohold(
            "build",
            "-t",
            "args:1",
            "--build-arg",
            "FLAVOUR=spicy",
            "--build-arg",
            "UNUSED=1",
            str(ctx),
            state=state,
        )
    )
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    run = ok(
        cargohold(
            "run", "--rm", "args:1", "sh", "-c", "cat /flavour; echo env=$FLAVOUR", state=state
        )
    )
    assert run == "spicy\nenv=\n"
    os.environ.pop("FLAVOUR", None)
