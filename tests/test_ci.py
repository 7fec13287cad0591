"""The README's two commands and what CI runs stay the same thing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def sh_blocks(text: str) -> list[list[str]]:
    """The command lines of every ```sh block, comments dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [
        [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
        for block in blocks
    ]


def script_commands(path: Path) -> list[str]:
    """What a .ci script runs, without its set-up lines, comments and arguments passed on."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    skip = ("#", "set ", "cd ", "export ", "bash .ci/setup")
    return [line.replace(' "$@"', "") for line in lines if line and not line.startswith(skip)]


def test_the_two_commands_exist_and_parse() -> None:
    two = next(block for block in sh_blocks(README) if any(".ci/" in line for line in block))
    assert two == ["bash .ci/main", "bash .ci/run"]
    for script in ("setup", "main", "run"):
        path = ROOT / ".ci" / script
        checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        assert path.read_text().startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in path.read_text()  # a failing step fails CI
    for script in ("main", "run"):
        assert "bash .ci/setup" in (ROOT / ".ci" / script).read_text()


def test_ci_run_is_the_readmes_test_commands() -> None:
    run = ROOT / ".ci" / "run"
    commands = script_commands(run)
    assert commands in sh_blocks(README), (
        f".ci/run runs {commands}; the README must list exactly these as its test commands"
    )
    assert "export CARGOHOLD_NO_SKIP=1" in run.read_text()
    assert any(c.startswith(".venv/bin/python -m pytest") for c in commands)
    assert ".venv/bin/mypy" in commands
    assert any(c.startswith(".venv/bin/ruff check") for c in commands)
    assert any(c.startswith(".venv/bin/ruff format") and "--check" in c for c in commands)
