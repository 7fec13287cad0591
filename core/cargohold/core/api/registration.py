"""What registration hooks return: implementation classes, or names to import later.

A plugin may hand over a class itself, or a `KnownImplementation`: a name and
where the class lives, imported only when that name is first used (in the
manner of fsspec's ``known_implementations``). A registration whose SDK is not
installed then costs nothing at start-up and, when asked for, says what to
install instead of "unknown driver".
"""

from __future__ import annotations

from typing import NamedTuple


class KnownImplementation(NamedTuple):  # (a frozen dataclass costs every command ~1 ms)
    """``name`` is implemented by ``target`` (``"package.module:Class"``), imported on first use.

    ``requires`` names modules the implementation needs (an SDK, say): if one
    is missing the name is reported as not installed, with ``install`` (a
    command such as ``pip install 'cargohold[s3]'``) as the remedy.
    """

    name: str
    target: str
    install: str = ""
    requires: tuple[str, ...] = ()
