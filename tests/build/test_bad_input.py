"""Dockerfiles cargohold cannot build: clear errors naming the line, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.core import Runtime

from ..registry.conftest import cargohold, ok
from .conftest import BASE

pytestmark = pytest.mark.root


def _build(state: Path, context: Path, dockerfile: str, *args: str) -> tuple[int, str]:
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    result = cargohold("build", "-t", "bad:1", *args, str(context), state=state)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        (f"FROM {BASE}\nFOO bar\n", "line 2: unknown instruction: FOO"),
        (f"FROM {BASE}\nENV\n", "line 2: ENV requires at least one argument"),
        (f"FROM {BASE}\n\nHEALTHCHECK CMD true\n", "line 3: HEALTHCHECK is not supported"),
        (f"FROM {BASE}\nONBUILD RUN true\n", "line 2: ONBUILD is not supported"),
        (f"FROM {BASE} AS one\nFROM {BASE}\n", "line 2: a second FROM (a multi-stage build)"),
        (f"FROM {BASE}\nCOPY --from=one /a /b\n", "line 2: COPY --from (multi-stage builds)"),
        (f"FROM {BASE}\nRUN <<EOF\necho hi\nEOF\n", "line 2: heredocs (<<EOF) are not supported"),
        (f"FROM {BASE}\nCOPY ../outside /x\n", "line 2 (COPY): forbidden path outside the build"),
        (f"FROM {BASE}\nCOPY secret /x\n", "excluded by .dockerignore"),
        (f"FROM {BASE}\nCOPY missing /x\n", "line 2 (COPY): missing: file not found"),
        ("RUN true\n", "has no FROM instruction"),
        (f"RUN true\nFROM {BASE}\n", "line 1 (RUN): only ARG may come before FROM"),
        ("", "has no instructions"),
        (
            f"FROM {BASE}\nSHELL /bin/sh -c\n",
            "line 2 (SHELL): SHELL requires the arguments in JSON",
        ),
        (f"FROM {BASE}\nCOPY a b c\n", "the destination must be a directory and end with a /"),
        (f'FROM {BASE}\nENV A="unterminated\n', "line 2"),
        (f"FROM {BASE}\nRUN --mount=type=cache,target=/x true\n", "line 2: RUN --mount"),
    ],
)
def test_refused_with_the_line(
    base_state: Path, tmp_path: Path, dockerfile: str, expected: str
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for name in ("secret", "a", "b"):
        (context / name).write_text(name)
    (context / ".dockerignore").write_text("secret\n")
    (tmp_path / "outside").write_text("outside the context")
    code, output = _build(base_state, context, dockerfile)
    assert code == 1, output
    assert expected in output, output
    with Runtime(base_state) as rt:
        assert [i.repo_tags for i in rt.images.list() if "bad:1" in i.repo_tags] == []
        assert rt.containers.list(all=True) == []


def test_failing_run_leaves_no_container(base_state: Path, tmp_path: Path) -> None:
    code, output = _build(
        base_state, tmp_path / "context", f"FROM {BASE}\nRUN echo before && exit 3\n"
    )
    assert code == 1
    assert "before" in output
    assert "The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3" in output
    assert ok(cargohold("ps", "-a", "-q", state=base_state)).strip() == ""
    with Runtime(base_state) as rt:
        assert all("bad:1" not in i.repo_tags for i in rt.images.list())


def test_unknown_base_image(base_state: Path, tmp_path: Path) -> None:
    code, output = _build(base_state, tmp_path / "context", "FROM 127.0.0.1:1/nothing:here\n")
    assert code == 1
    assert "line 1 (FROM)" in output and "cannot reach registry 127.0.0.1:1" in output
