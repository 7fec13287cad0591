"""Signals a foreground supervisor passes on to the container, as ``docker run`` does."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def number(text: str) -> int:
    """``KILL``, ``SIGKILL``, ``sigkill`` or ``9`` -> 9; `ValueError` for what is no signal."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if not 0 < value < signal.NSIG:
            raise ValueError(f"Invalid signal: {text}")
        return value
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"Invalid signal: {text}") from None


@contextlib.contextmanager
def forwarded(pid: int) -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP to us go to ``pid``."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
