"""Errors across HTTP: the status each error answers with, and what a bug shows.

The core's errors carry their status (`CargoholdError.http_status`), so the
table lives there; this module is the one place a frontend asks it, so an
unexpected exception answers 500 in every frontend alike, whatever server
(Flask's handlers, or a raw connection) writes the answer.
"""

from __future__ import annotations

from cargohold.core.api.errors import CargoholdError


def status_for(err: BaseException) -> int:
    """The HTTP status to answer ``err`` with: its own for our errors, else 500."""
    if isinstance(err, CargoholdError):
        return err.http_status
    return 500


def unexpected_message(err: BaseException) -> str:
    """What a caller sees for a bug: the kind and text, never a traceback."""
    return f"internal error: {type(err).__name__}: {err}"
