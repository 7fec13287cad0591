"""One small error hierarchy, translated once at each boundary.

The CLI turns these into exit codes, the Docker protocol bridge into ``Err``
answers, the Engine API into status codes. Messages say what failed, on which
volume, and what to do about it.
"""

from __future__ import annotations


class CargoholdError(Exception):
    """Base of every error cargohold raises on purpose."""

    #: HTTP status used where an error crosses an HTTP boundary.
    http_status = 500


class NotFound(CargoholdError):
    """The volume, driver, plugin or object named does not exist."""

    http_status = 404


class Conflict(CargoholdError):
    """The request contradicts what exists (a name taken, different options)."""

    http_status = 409


class InUse(Conflict):
    """The object is referenced (mounted, used by a container) and cannot go."""


class InvalidArgument(CargoholdError):
    """A name, option or request is malformed; nothing was changed."""

    http_status = 400


class Unavailable(CargoholdError):
    """A backend, server or device cannot be reached right now; retry later."""

    http_status = 503


class NotSupported(CargoholdError):
    """The driver or host lacks the capability the request needs."""

    http_status = 501
