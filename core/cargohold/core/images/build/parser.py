"""Dockerfile parsing: lines into instructions, and the shell-like word rules.

Follows docker's parser: parser directives (``# escape=``, ``# syntax=``) at
the very top; comments are whole lines starting with ``#``; a line ending
with the escape character continues on the next (comment and empty lines in
between are dropped); the first word is the instruction, in any case; an
argument that is a JSON array of strings is the exec (JSON) form, anything
else the shell form. Variables are expanded as docker expands them (``$A``,
``${A}``, ``${A:-x}``, ``${A:+x}``, ``${A-x}``, ``${A+x}``), quotes and
escapes removed, in the instructions that take them.

Everything cargohold does not build (multi-stage builds, ``HEALTHCHECK``,
``ONBUILD``, heredocs, ``RUN --mount``) is refused with the line number,
never silently skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cargohold.core.api.errors import InvalidArgument, NotSupported

SUPPORTED = (
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "STOPSIGNAL",
    "SHELL",
)
_REFUSED = {
    "HEALTHCHECK": "HEALTHCHECK is not supported by cargohold build; remove it",
    "ONBUILD": "ONBUILD is not supported by cargohold build; remove it",
}
_FLAGS = {"FROM": ("platform",), "COPY": ("chown", "chmod", "from"), "ADD": ("chown", "chmod")}
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<-?\s*[\"']?[A-Za-z_][A-Za-z0-9_]*[\"']?")


class DockerfileError(InvalidArgument):
    """The Dockerfile cannot be built as written; the message names the line."""


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts, 1-based
    name: str  # upper case
    args: str  # the text after the instruction and its flags
    original: str  # the whole instruction as written (continuations joined)
    flags: dict[str, str] = field(default_factory=dict)
    json: list[str] | None = None  # the exec form, if the arguments are one

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(f"Dockerfile line {self.line} ({self.name}): {message}")


def _json_form(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # docker then takes it as the shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse(text: str, name: str = "Dockerfile") -> list[Instruction]:
    """The instructions of a Dockerfile; `DockerfileError` naming the line if malformed."""
    lines = text.splitlines()
    escape = "\\"
    start = 0
    # parser directives: only before anything else
    seen: set[str] = set()
    for number, line in enumerate(lines):
        match = _DIRECTIVE.fullmatch(line.strip())
        if not match or match.group(1).lower() in seen:
            break
        key, value = match.group(1).lower(), match.group(2)
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(
                    f"{name} line {number + 1}: invalid escape directive {value!r}: use \\ or `"
                )
            escape = value
        start = number + 1
    instructions: list[Instruction] = []
    index = start
    while index < len(lines):
        raw = lines[index]
        stripped = raw.strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        first = index
        parts = [stripped]
        while parts[-1].rstrip().endswith(escape) and index <= len(lines):
            parts[-1] = parts[-1].rstrip()[: -len(escape)]
            # the next line that is not a comment or empty continues this one
            while index < len(lines) and (
                not lines[index].strip() or lines[index].strip().startswith("#")
            ):
                index += 1
            if index >= len(lines):
                break
            parts.append(lines[index].rstrip())  # docker keeps the indentation
            index += 1
        joined = "".join(parts).strip()
        instructions.append(_instruction(first, joined, name))
    return instructions


def _instruction(line: int, text: str, name: str) -> Instruction:
    word, _, rest = text.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = f"{more} {rest}".strip()
    upper = word.upper()
    rest = rest.strip()
    where = f"{name} line {line}"
    if upper in _REFUSED:
        raise NotSupported(f"{where}: {_REFUSED[upper]}")
    if upper not in SUPPORTED:
        raise DockerfileError(f"{where}: unknown instruction: {word}")
    flags: dict[str, str] = {}
    while rest.startswith("--") and upper in (*_FLAGS, "RUN"):
        flag, _, rest = rest.partition(" ")
        rest = rest.strip()
        key, sep, value = flag[2:].partition("=")
        if upper == "RUN":
            raise NotSupported(f"{where}: RUN --{key} is not supported by cargohold build")
        if key not in _FLAGS[upper] or not sep:
            raise DockerfileError(f"{where}: unknown flag --{key} for {upper}")
        if key == "from":
            raise NotSupported(
                f"{where}: {upper} --from (multi-stage builds) is not supported by cargohold build"
            )
        flags[key] = value
    if upper in ("RUN", "COPY", "ADD") and _HEREDOC.search(rest) and _json_form(rest) is None:
        raise NotSupported(f"{where}: heredocs (<<EOF) are not supported by cargohold build")
    if not rest and upper not in ("CMD", "ENTRYPOINT"):
        raise DockerfileError(f"{where}: {upper} requires at least one argument")
    return Instruction(line, upper, rest, text, flags, _json_form(rest))


# -- words, quotes and variables -------------------------------------------------------------


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for `expand`."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and quote != "'" and i + 1 < len(text):
            current += [c, text[i + 1]]
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c.isspace():
            if current:
                words.append("".join(current))
                current = []
            i += 1
            continue
        current.append(c)
        i += 1
    if quote:
        raise InvalidArgument(f"unmatched {quote} in {text!r}")
    if current:
        words.append("".join(current))
    return words


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Docker's word processing: variables expanded, quotes and escapes removed."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and quote != "'" and i + 1 < len(text):
            nxt = text[i + 1]
            if quote == '"' and nxt not in ('"', "$", escape):
                out.append(c)
            out.append(nxt)
            i += 2
        elif quote == "'" and c != "'":
            out.append(c)
            i += 1
        elif c in "'\"" and (not quote or quote == c):
            quote = "" if quote else c
            i += 1
        elif c == "$":
            value, i = _variable(text, i + 1, env, escape)
            out.append(value)
        else:
            out.append(c)
            i += 1
    if quote:
        raise InvalidArgument(f"unmatched {quote} in {text!r}")
    return "".join(out)


def _variable(text: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    if i < len(text) and text[i] == "{":
        end = text.find("}", i)
        if end < 0:
            raise InvalidArgument(f"missing '}}' in {text!r}")
        body = text[i + 1 : end]
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?", body, re.S)
        if match is None:
            raise InvalidArgument(f"bad substitution ${{{body}}} in {text!r}")
        name, op, word = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return (expand(word, env, escape) if unset else value or ""), end + 1
        if op in (":+", "+"):
            present = value is not None and (op == "+" or value != "")
            return (expand(word, env, escape) if present else ""), end + 1
        return value or "", end + 1
    match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i)
    if match is None:
        return "$", i
    return env.get(match.group(0), ""), match.end()


def key_values(inst: Instruction, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``ENV``/``LABEL`` pairs: ``k=v k2="v 2"``, or the legacy ``ENV key the value``."""
    words = split_words(inst.args)
    if not words:
        raise inst.error("requires at least one argument")
    if "=" not in words[0] or (words[0].startswith(("'", '"')) and inst.name == "ENV"):
        if inst.name != "ENV" and inst.name != "LABEL":
            raise inst.error("expected key=value")
        name, _, rest = inst.args.partition(" ")
        if not rest.strip():
            raise inst.error(f"{inst.name} {name} needs a value: write {name}=VALUE")
        return [(expand(name, env), expand(rest.strip(), env))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise inst.error(f"{word!r} is not key=value")
        pairs.append((expand(key, env), expand(value, env)))
    return pairs
