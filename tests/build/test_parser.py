"""The Dockerfile parser, docker's word rules, .dockerignore and --chown lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.core.api.errors import CargoholdError
from cargohold.core.images.build.context import DockerIgnore
from cargohold.core.images.build.copy import in_root, owner
from cargohold.core.images.build.parser import expand, key_values, parse, split_words


def test_continuations_comments_and_forms() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "# a comment\n"
        "from busybox\n"
        "RUN echo a \\\n"
        "# a comment inside\n"
        "\n"
        "    && echo b\n"
        'CMD ["sh", "-c", "echo hi"]\n'
        "CMD [not json\n"
    )
    first, run, json_cmd, shell_cmd = parse(text)
    assert (first.name, first.args, first.line) == ("FROM", "busybox", 3)
    assert run.args == "echo a     && echo b" and run.line == 4 and run.json is None
    assert json_cmd.json == ["sh", "-c", "echo hi"]
    assert shell_cmd.json is None and shell_cmd.args == "[not json"


def test_escape_directive() -> None:
    (inst,) = parse("# escape=`\nRUN dir c:\\ `\n  && echo done\n")
    assert inst.args == "dir c:\\   && echo done"


def test_words_and_expansion() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand("$A ${A} ${B:-dflt} ${EMPTY:-e} ${EMPTY-set} ${A:+alt} ${B:+x}", env) == (
        "1 1 dflt e  alt "
    )
    assert expand("'$A' \"$A\" \\$A", env) == "$A 1 $A"
    assert split_words('a "b c" d\\ e') == ["a", '"b c"', "d\\ e"]
    (inst,) = parse('ENV X="a b" Y=$A\n')
    assert key_values(inst, env) == [("X", "a b"), ("Y", "1")]
    (legacy,) = parse("ENV NAME the whole value\n")
    assert key_values(legacy, env) == [("NAME", "the whole value")]


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*.tmp"], "a.tmp", True),
        (["*.tmp"], "dir/a.tmp", False),
        (["**/*.tmp"], "dir/sub/a.tmp", True),
        (["dir"], "dir/inner/file", True),
        (["dir", "!dir/keep"], "dir/keep", False),
        (["dir", "!dir/keep"], "dir/other", True),
        (["/abs/x"], "abs/x", True),
        (["# comment", ""], "x", False),
        (["a?c"], "abc", True),
        (["[ab]x"], "bx", True),
    ],
)
def test_dockerignore(patterns: list[str], path: str, ignored: bool) -> None:
    assert DockerIgnore(patterns).ignored(path) is ignored


def test_in_root_follows_links_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "abs").symlink_to("/real")
    (tmp_path / "up").symlink_to("../../../real")
    assert in_root(tmp_path, "/abs/f") == tmp_path / "real" / "f"
    assert in_root(tmp_path, "/up/f") == tmp_path / "real" / "f"
    assert in_root(tmp_path, "/../../etc/passwd") == tmp_path / "etc" / "passwd"


def test_chown_names_from_the_image(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:1234:1234::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("apps:x:5678:\n")
    (inst,) = parse("COPY --chown=app:apps a /b\n")
    assert owner(tmp_path, "app:apps", inst) == (1234, 5678)
    assert owner(tmp_path, "77", inst) == (77, 77)
    assert owner(tmp_path, None, inst) == (0, 0)
    with pytest.raises(CargoholdError, match=r"line 1 .*unable to find user nobody"):
        owner(tmp_path, "nobody", inst)
