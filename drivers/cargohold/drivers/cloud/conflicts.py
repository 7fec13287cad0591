"""Conflict copies: names that say whose and when, and the volume's conflict record."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cargohold.drivers.cloud.durable import read_json, write_json

# the record keeps the latest conflicts only: Status must stay small
_KEEP = 50
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def host_name() -> str:
    return _UNSAFE.sub("-", socket.gethostname()) or "host"


def conflict_name(path: str, host: str, when: float) -> str:
    """``dir/report.txt`` -> ``dir/report.conflict-HOST-20261201T212000Z.txt``.

    The tag goes before the extension so the copy still opens with the same program.
    """
    directory, _, base = path.rpartition("/")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    stem, dot, ext = base.rpartition(".")
    if not stem:  # no extension, or a dot file such as .env
        stem, dot, ext = base, "", ""
    name = f"{stem}.conflict-{host}-{stamp}{dot}{ext}"
    return f"{directory}/{name}" if directory else name


@dataclass(frozen=True)
class ConflictRecord:
    path: str
    #: where the local version went (None when the local side was a delete)
    copy: str | None
    at: float
    reason: str


class ConflictLog:
    """The conflicts of one volume, persisted; `unreported` feeds ``volume sync``'s exit code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> tuple[list[ConflictRecord], int]:
        raw = read_json(self.path, {"conflicts": [], "total": 0, "reported": 0})
        return [ConflictRecord(**c) for c in raw["conflicts"]], int(raw.get("reported", 0))

    def add(self, record: ConflictRecord) -> None:
        with self._lock:
            raw = read_json(self.path, {"conflicts": [], "total": 0, "reported": 0})
            conflicts = [*raw["conflicts"], asdict(record)][-_KEEP:]
            write_json(
                self.path,
                {"conflicts": conflicts, "total": raw["total"] + 1, "reported": raw["reported"]},
            )

    def all(self) -> list[ConflictRecord]:
        return self._load()[0]

    def total(self) -> int:
        return int(read_json(self.path, {"total": 0})["total"])

    def unreported(self) -> list[ConflictRecord]:
        """Conflicts recorded since the last `mark_reported`."""
        raw = read_json(self.path, {"conflicts": [], "total": 0, "reported": 0})
        new = raw["total"] - raw["reported"]
        return [ConflictRecord(**c) for c in raw["conflicts"][-new:]] if new > 0 else []

    def mark_reported(self) -> None:
        with self._lock:
            raw = read_json(self.path, {"conflicts": [], "total": 0, "reported": 0})
            raw["reported"] = raw["total"]
            write_json(self.path, raw)
