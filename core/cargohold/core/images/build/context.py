"""The build context: ``.dockerignore``, ``COPY`` sources, and their checksums.

``.dockerignore`` is read as docker reads it: one pattern a line, ``#``
comments, paths cleaned and taken from the context's root, ``*``, ``?``,
``[...]`` within one path element, ``**`` across any number, ``!`` for an
exception; the last pattern that matches a path (or one of its parents)
decides. Ignored files do not exist for ``COPY``/``ADD``.

A source must stay inside the context, symlinks in the context included:
``COPY ../x`` or a link that leads out is refused. The checksum of what a
step copies covers each file's path, type, mode, owner-free content and link
target (not its time), as the classic builder's cache does: touching a file
keeps the cache, changing a byte does not.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cargohold.core.images.build.parser import DockerfileError, Instruction


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("^"):
                    body = "!" + body[1:]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    exclusion: bool


class DockerIgnore:
    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[_Rule] = []
        for raw in patterns:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            exclusion = text.startswith("!")
            text = text[1:].strip() if exclusion else text
            text = posixpath.normpath(text).lstrip("/")
            if text in ("", "."):
                continue
            self.rules.append(_Rule(_pattern_regex(text), exclusion))

    @classmethod
    def read(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text().splitlines() if path.is_file() else [])

    def ignored(self, rel: str) -> bool:
        """True if the context path ``rel`` (``a/b``) is left out."""
        parents = []
        parts = rel.split("/")
        for n in range(1, len(parts)):
            parents.append("/".join(parts[:n]))
        result = False
        for rule in self.rules:
            if rule.regex.fullmatch(rel) or any(rule.regex.fullmatch(p) for p in parents):
                result = not rule.exclusion
        return result


@dataclass(frozen=True)
class Source:
    """One source of a ``COPY``: a file, directory or link of the context."""

    rel: str  # relative to the context, "" for the context itself
    path: Path


class Context:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise DockerfileError(f"build context {root} is not a directory")
        self.ignore = DockerIgnore.read(self.root)

    def _inside(self, rel: str, inst: Instruction, given: str) -> Path:
        """The context path ``rel``, refused if it (or a link on the way) leads outside."""
        path = self.root / rel
        try:
            real = Path(os.path.realpath(path.parent)) / path.name
        except OSError:
            real = path
        if rel == "":
            return self.root
        if not str(real).startswith(str(self.root) + os.sep) and real != self.root:
            raise inst.error(f"forbidden path outside the build context: {given}")
        return real

    def sources(self, inst: Instruction, given: list[str]) -> list[Source]:
        """Each ``COPY`` source, wildcards expanded; errors name the line and the source."""
        found: list[Source] = []
        for text in given:
            normal = posixpath.normpath("/" + text.replace("\\", "/")).lstrip("/")
            if text.startswith("..") or posixpath.normpath(text).startswith(".."):
                raise inst.error(f"forbidden path outside the build context: {text}")
            if re.match(r"[a-z]+://", text):
                raise inst.error(f"{text}: sources from URLs are not supported by cargohold build")
            if any(c in normal for c in "*?["):
                matches = [r for r in self._walk("") if fnmatch.fnmatchcase(r, normal)]
                matches = [m for m in matches if not any(m.startswith(x + "/") for x in matches)]
                if not matches:
                    raise inst.error(f"no source files were specified by {text!r}")
                found += [Source(m, self._inside(m, inst, text)) for m in sorted(matches)]
                continue
            rel = "" if normal in ("", ".") else normal
            path = self._inside(rel, inst, text)
            if (rel and self.ignore.ignored(rel)) or not os.path.lexists(path):
                raise inst.error(
                    f"{text}: file not found in build context or excluded by .dockerignore"
                )
            found.append(Source(rel, path))
        return found

    def _walk(self, rel: str) -> list[str]:
        """Every path under ``rel`` that ``.dockerignore`` keeps, relative to the context."""
        out: list[str] = []
        base = self.root / rel
        for where, dirs, files in os.walk(base):
            here = os.path.relpath(where, self.root)
            here = "" if here == "." else here
            for name in sorted(dirs + files):
                child = f"{here}/{name}" if here else name
                if not self.ignore.ignored(child):
                    out.append(child)
            dirs.sort()
        return out

    def files_of(self, source: Source) -> list[str]:
        """``source`` and, for a directory, what it holds, that is not ignored."""
        if source.path.is_dir() and not source.path.is_symlink():
            return [r for r in self._walk(source.rel)]
        return [source.rel]

    def checksum(self, sources: list[Source]) -> str:
        """What the cache compares: paths, types, modes, contents and link targets."""
        digest = hashlib.sha256()
        for source in sources:
            digest.update(f"source {source.rel}\0".encode())
            for rel in self.files_of(source):
                path = self.root / rel
                info = os.lstat(path)
                mode = stat.S_IMODE(info.st_mode)
                kind = stat.S_IFMT(info.st_mode)
                digest.update(f"{rel}\0{kind:o}\0{mode:o}\0".encode())
                if stat.S_ISLNK(info.st_mode):
                    digest.update(os.readlink(path).encode())
                elif stat.S_ISREG(info.st_mode):
                    digest.update(_file_hash(path).encode())
                digest.update(b"\n")
        return digest.hexdigest()


def _file_hash(path: Path) -> str:
    content = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            content.update(chunk)
    return content.hexdigest()
