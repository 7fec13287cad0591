"""What ``/proc`` says about processes, read in one place.

A pid alone can be reused; a pid with the kernel's start time of that
process (field 22 of ``/proc/<pid>/stat``) names one process for good.
"""

from __future__ import annotations

import contextlib
import os


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (``[]`` if gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return []
    # the command name is in parentheses and may hold spaces or ')': split after the last
    return text[text.rindex(b")") + 2 :].split()


def state(pid: int) -> str:
    """The one-letter state (``R``, ``S``, ``T``, ``Z``...), ``""`` if the process is gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else ""


def start_time(pid: int) -> int:
    """The kernel's start time of ``pid``; 0 if it is gone or has ended (a zombie)."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    """Whether the process that had ``start`` as its start time still runs as ``pid``."""
    return pid > 0 and start != 0 and start_time(pid) == start


def pid_namespace(pid: int) -> str:
    """The PID namespace of ``pid``, as ``readlink /proc/<pid>/ns/pid`` shows it."""
    return os.readlink(f"/proc/{pid}/ns/pid")


def pids_in(namespace: str) -> list[int]:
    """Every process (host pids) in the PID namespace ``namespace``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
    return found
