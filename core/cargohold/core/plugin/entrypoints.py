"""Finding one entry-point group without importing `importlib.metadata`.

Every command loads its plugins, and importing `importlib.metadata` (with
`email`, `zipfile`, `csv` behind it) costs more than the rest of the lookup.
For the common layout, plain directories on ``sys.path`` holding
``*.dist-info`` or ``*.egg-info`` folders, this module reads the same
files the same way: a distribution's first appearance on the path wins,
and only the distributions that declare the group have their name and
version read. Any other layout (a zip on the path, a custom finder of
distributions) goes through `importlib.metadata` itself.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from functools import reduce
from typing import NamedTuple

_METADATA_DIR = re.compile(r"(?i).*\.(dist|egg)-info$")
# importlib.metadata's EntryPoint.pattern: "module[:attr.attr] [extras]"
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class PluginEntry(NamedTuple):  # (a dataclass costs more to define than the lookup)
    """One ``name = value`` of the group, and the distribution declaring it."""

    name: str
    value: str
    dist_name: str
    dist_version: str

    def load(self) -> object:
        """Import the module the value names (and the attribute after ``:``)."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ImportError(f"entry point {self.name} = {self.value!r} names no module")
        module = importlib.import_module(match.group("module"))
        attrs = (match.group("attr") or "").split(".")
        return reduce(getattr, filter(None, attrs), module)


def group_entries(group: str) -> list[PluginEntry]:
    """Every entry point of ``group``, in `importlib.metadata.entry_points` order."""
    if not _plain_layout():
        return _via_importlib(group)
    entries: list[PluginEntry] = []
    seen: set[str] = set()
    for folder in _metadata_dirs():
        # "Name-1.0.dist-info" -> "name", as importlib.metadata keys distributions
        name = _normalize(os.path.basename(folder).lower().rpartition(".")[0].partition("-")[0])
        if name in seen:
            continue
        seen.add(name)
        declared = _section(_read(os.path.join(folder, "entry_points.txt")), group)
        if not declared:
            continue
        dist_name, dist_version = _name_version(folder)
        entries.extend(PluginEntry(n, v, dist_name, dist_version) for n, v in declared)
    return entries


def _plain_layout() -> bool:
    """True if every distribution on the path is a folder this module reads alike."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and hasattr(finder, "find_distributions"):
            return False
    # a zip (egg or wheel), an unzipped egg or a non-string entry on the path:
    # importlib.metadata knows those
    return all(
        isinstance(entry, str) and not entry.endswith(".egg") and not os.path.isfile(entry)
        for entry in sys.path
    )


def _metadata_dirs() -> list[str]:
    found: list[str] = []
    for entry in sys.path:
        root = entry or "."
        try:
            names = os.listdir(root)
        except OSError:
            continue
        found.extend(os.path.join(root, n) for n in names if _METADATA_DIR.match(n))
    return found


def _normalize(name: str) -> str:
    # as importlib.metadata's Prepared.normalize (PEP 503, then "-" as "_")
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` pairs under ``[group]`` (``#`` comments and blanks skipped)."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        name, sep, value = line.partition("=")
        if current == group and sep:  # (a line without "=" breaks importlib.metadata)
            pairs.append((name.strip(), value.strip()))
    return pairs


def _name_version(folder: str) -> tuple[str, str]:
    """``Name`` and ``Version`` from the metadata headers (METADATA, or PKG-INFO for eggs)."""
    text = _read(os.path.join(folder, "METADATA")) or _read(os.path.join(folder, "PKG-INFO"))
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the body starts: no more headers
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            headers.setdefault(key.strip().lower(), value.strip())
    return headers.get("name", ""), headers.get("version", "")


def _via_importlib(group: str) -> list[PluginEntry]:
    import importlib.metadata

    entries: list[PluginEntry] = []
    described: dict[int, tuple[str, str]] = {}  # parsing METADATA is slow: once per dist
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist
        if dist is None:
            entries.append(PluginEntry(ep.name, ep.value, "", ""))
            continue
        if id(dist) not in described:
            described[id(dist)] = (dist.name, dist.version)
        entries.append(PluginEntry(ep.name, ep.value, *described[id(dist)]))
    return entries
