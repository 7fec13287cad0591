"""Built-in secret references: ``env:NAME`` and ``file:/path``."""

from __future__ import annotations

import os
from pathlib import Path

from cargohold.core import NotFound, hookimpl


@hookimpl(trylast=True)
def cargohold_resolve_secret(ref: str) -> str | None:
    scheme, sep, rest = ref.partition(":")
    if not sep:
        return None
    if scheme == "env":
        value = os.environ.get(rest)
        if value is None:
            raise NotFound(f"secret reference env:{rest}: the environment has no {rest}")
        return value
    if scheme == "file":
        path = Path(rest)
        if not path.is_absolute():
            raise NotFound(f"secret reference file:{rest}: give an absolute path")
        try:
            return path.read_text().rstrip("\n")
        except OSError as err:
            raise NotFound(f"secret reference file:{rest}: {err.strerror}") from None
    return None
