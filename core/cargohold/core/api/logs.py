"""Module loggers that import `logging` only when they first log.

Importing logging costs a command several milliseconds (traceback, string
and their kin come with it), and most commands log nothing. A module on a
command's path takes its logger from here; the stand-in hands every call to
the real `logging.Logger` of the same name, importing logging then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging


class _Deferred:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        import logging

        return getattr(logging.getLogger(self._name), attribute)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, with the import of logging put off to the first use."""
    return cast("logging.Logger", _Deferred(name))
