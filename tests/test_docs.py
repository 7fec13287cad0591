"""The docs keep up with the code: every hook documented, links alive, the example small."""

from __future__ import annotations

import inspect
import io
import re
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cargohold.core.api import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "example-plugin"


def hook_specs() -> dict[str, Callable[..., Any]]:
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("cargohold_") and hasattr(fn, marker)
    }


def spec_options(fn: Callable[..., Any]) -> dict[str, Any]:
    options: dict[str, Any] = getattr(fn, f"{hookspecs.PROJECT}_spec")
    return options


def hooks_page() -> str:
    return (DOCS / "hooks.md").read_text()


def test_hook_specs_are_found() -> None:
    assert {"cargohold_volume_drivers", "cargohold_resolve_secret", "cargohold_cli"} <= set(
        hook_specs()
    )


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_is_in_hooks_md(name: str) -> None:
    page = hooks_page()
    # its own section, not a mention in another hook's text
    assert re.search(rf"^#+ +{name}\b", page, re.MULTILINE), (
        f"hook {name} is missing from docs/hooks.md: add a section (signature, when it is "
        "called, firstresult or not, an example)"
    )
    assert re.search(rf"^\| *`{name}` *\|", page, re.MULTILINE), (
        f"hook {name} is missing from the summary table of docs/hooks.md"
    )


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_is_typed_and_documented_in_code(name: str) -> None:
    fn = hook_specs()[name]
    assert inspect.getdoc(fn), f"hookspec {name} has no docstring"
    signature = inspect.signature(fn)
    untyped = [p for p in signature.parameters if p not in fn.__annotations__]
    assert not untyped, f"hookspec {name}: parameters without a type: {untyped}"
    assert "return" in fn.__annotations__, f"hookspec {name} has no return type"


def test_hooks_md_names_only_real_hooks() -> None:
    named = set(re.findall(r"^#+ +(cargohold_\w+)", hooks_page(), re.MULTILINE))
    named |= set(re.findall(r"^\| *`(cargohold_\w+)`", hooks_page(), re.MULTILINE))
    stale = named - set(hook_specs())
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {sorted(stale)}"


def test_hooks_md_table_gives_the_right_firstresult() -> None:
    rows = re.findall(r"^\| *`(cargohold_\w+)` *\|[^|]*\| *(yes|no) *\|", hooks_page(), re.M)
    assert rows, "docs/hooks.md lost its summary table"
    specs = hook_specs()
    for name, said in rows:
        if name in specs:
            actual = bool(spec_options(specs[name]).get("firstresult"))
            assert (said == "yes") == actual, f"{name}: the table says firstresult {said}"


def code_lines(path: Path) -> int:
    """Lines holding code: no blank lines, comments or docstrings."""
    lines: set[int] = set()
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        docstring = token.type == tokenize.STRING and previous in (
            tokenize.NEWLINE,
            tokenize.NL,
            tokenize.INDENT,
            tokenize.DEDENT,
        )
        if token.type not in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            if not docstring:
                lines.update(range(token.start[0], token.end[0] + 1))
            previous = token.type
        elif token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            previous = token.type
    return len(lines)


def test_example_plugin_is_under_50_lines_of_code() -> None:
    sources = sorted((EXAMPLE / "src").rglob("*.py"))
    assert sources, "docs/example-plugin/src holds no Python"
    total = sum(code_lines(p) for p in sources)
    physical = sum(len(p.read_text().splitlines()) for p in sources)
    assert 10 < total < 50, f"the example plugin has {total} lines of code"
    assert physical < 50, f"the example plugin has {physical} lines in all"


def test_example_plugin_registers_through_the_entry_point_group() -> None:
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points.cargohold]\nmemo = "cargohold_memo"' in pyproject
    guide = (DOCS / "writing-a-plugin.md").read_text()
    assert "[project.entry-points.cargohold]" in guide and "VolumeDriverConformance" in guide


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, mailto:
        if not (page.parent / target).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_the_three_guides_exist() -> None:
    for name in ("architecture.md", "hooks.md", "writing-a-plugin.md"):
        assert len((DOCS / name).read_text()) > 1000, name
