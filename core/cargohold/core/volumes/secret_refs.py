"""Secret options: references in, resolved values out, never stored or shown."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cargohold.core.api.errors import CargoholdError, InvalidArgument

MASK = "********"


def resolve(hook: Any, option: str, ref: str) -> str:
    """Resolve the reference given for secret ``option`` through the plugins."""
    value: str | None = hook.cargohold_resolve_secret(ref=ref)
    if value is None:
        # Never echo ``ref``: a user may have pasted the secret itself.
        raise InvalidArgument(
            f"option {option} is secret: give a reference such as env:NAME or "
            "file:/path, not the value itself (no plugin resolved what was given)"
        )
    return value


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


@contextmanager
def redacting(secrets: list[str]) -> Iterator[None]:
    """Re-raise any error with every secret value masked out of its message.

    The original exception is dropped from the chain (``from None``) so that
    a traceback cannot carry a secret into a log either.
    """
    try:
        yield
    except Exception as err:
        if not secrets:
            raise
        message = redact(str(err), secrets)
        kind = type(err) if isinstance(err, CargoholdError) else CargoholdError
        # Python keeps the original as __context__ whatever we do: mask it too.
        err.args = (message,)
        raise kind(message) from None
