"""Named implementations of one kind, collected from a registration hook, imported lazily.

Volume drivers, snapshot drivers and block arrays all come to the core this
way: a hook's implementations return classes or `KnownImplementation` entries;
the registry imports an entry the first time its name is asked for, checks the
class, and turns a missing SDK into the install line the entry carries.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from cargohold.core.api.errors import Conflict, InvalidArgument, NotFound
from cargohold.core.api.registration import KnownImplementation

T = TypeVar("T")


class Registry(Generic[T]):
    """The ``what`` implementations (subclasses of ``base``) that ``provide()`` returns.

    ``provide`` is a hook call returning one iterable per plugin. Nothing is
    collected until a name is first asked for, and an entry's module is not
    imported until its own name is.
    """

    def __init__(
        self, provide: Callable[[], Iterable[Iterable[object]]], base: type[Any], what: str
    ) -> None:
        self._provide = provide
        self._base = base
        self._what = what
        self._entries: dict[str, type[T] | KnownImplementation] | None = None
        self._lock = threading.Lock()

    def _collected(self) -> dict[str, type[T] | KnownImplementation]:
        with self._lock:
            if self._entries is None:
                self._entries = self._collect()
            return self._entries

    def _collect(self) -> dict[str, type[T] | KnownImplementation]:
        found: dict[str, type[T] | KnownImplementation] = {}
        for provided in self._provide():
            for entry in provided:
                if not isinstance(entry, KnownImplementation):
                    entry = _checked_class(entry, self._base, self._what)
                name: str = entry.name
                if name in found and not _same(found[name], entry):
                    raise Conflict(
                        f"two plugins provide a {self._what} named {name!r}: "
                        f"{_origin(found[name])} and {_origin(entry)}; "
                        "block one with CARGOHOLD_BLOCK_PLUGINS"
                    )
                if not isinstance(entry, KnownImplementation) or name not in found:
                    found[name] = entry  # a class already imported beats its own entry
        return found

    def names(self) -> list[str]:
        """Every installed name (an entry whose required modules are all present)."""
        return sorted(n for n, e in self._collected().items() if not _missing(e))

    def not_installed(self) -> dict[str, str]:
        """Registered names whose required modules are missing -> how to install them."""
        return {n: e.install for n, e in self._collected().items() if _missing(e)}  # type: ignore[union-attr]

    def find(self, name: str) -> type[T] | None:
        """The class registered as ``name``, imported now if need be; None if unknown.

        Raises `NotFound` with the install line when ``name`` is registered but
        its SDK (or its module) is not installed.
        """
        entries = self._collected()
        entry = entries.get(name)
        if entry is None or not isinstance(entry, KnownImplementation):
            return entry
        if missing := _missing(entry):
            raise NotFound(self._not_installed(entry, f"{missing} is not installed"))
        try:
            module_name, _, attribute = entry.target.partition(":")
            loaded = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise NotFound(self._not_installed(entry, str(err))) from None
        cls = _checked_class(loaded, self._base, self._what)
        if cls.name != name:
            raise InvalidArgument(
                f"{entry.target} is registered as {name!r} but is named {cls.name!r}"
            )
        with self._lock:
            entries[name] = cls
        return cls

    def classes(self) -> dict[str, type[T]]:
        """Every installed implementation, imported."""
        found: dict[str, type[T]] = {}
        for name in self.names():
            cls = self.find(name)
            if cls is not None:
                found[name] = cls
        return found

    def _not_installed(self, entry: KnownImplementation, why: str) -> str:
        message = f"the {self._what} {entry.name!r} is not installed ({why})"
        return f"{message}: install it with {entry.install}" if entry.install else message


def _same(a: object, b: object) -> bool:
    """One implementation registered twice: the same class, or a class and its own entry."""
    if a == b:
        return True
    targets = {_origin(e).replace(":", ".") for e in (a, b)}
    return len(targets) == 1


def _missing(entry: object) -> str:
    """The first required module of ``entry`` that cannot be found, or ''."""
    if not isinstance(entry, KnownImplementation) or not entry.requires:
        return ""
    import importlib.util  # only registrations that name requirements need it

    for module in entry.requires:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):  # a parent package is missing or broken
            return module
    return ""


def _checked_class(cls: object, base: type, what: str) -> type[Any]:
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise InvalidArgument(f"{cls!r} is not a {base.__name__} subclass")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise InvalidArgument(f"{what} {_origin(cls)} does not implement: {missing}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{what} {_origin(cls)} has no name")
    return cls


def _origin(entry: object) -> str:
    if isinstance(entry, KnownImplementation):
        return entry.target
    assert isinstance(entry, type)
    return f"{entry.__module__}.{entry.__qualname__}"
