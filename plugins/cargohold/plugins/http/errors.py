"""Errors across HTTP: the status each error answers with, and the error a status means.

The core's errors carry their status (`CargoholdError.http_status`), so the
table lives there; this module is the one place a frontend asks it, so an
unexpected exception answers 500 in every frontend alike.
"""

from __future__ import annotations

from cargohold.core.api.errors import (
    CargoholdError,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unavailable,
)

# The inverse of `http_status`, for clients reading a status without a message to go by.
_BY_STATUS: dict[int, type[CargoholdError]] = {
    cls.http_status: cls for cls in (NotFound, Conflict, InvalidArgument, Unavailable, NotSupported)
}


def status_for(err: BaseException) -> int:
    """The HTTP status to answer ``err`` with: its own for our errors, else 500."""
    if isinstance(err, CargoholdError):
        return err.http_status
    return 500


def error_for_status(status: int) -> type[CargoholdError]:
    """The error kind an answer's status names (`CargoholdError` when it names none)."""
    return _BY_STATUS.get(status, CargoholdError)


def unexpected_message(err: BaseException) -> str:
    """What a caller sees for a bug: the kind and text, never a traceback."""
    return f"internal error: {type(err).__name__}: {err}"
