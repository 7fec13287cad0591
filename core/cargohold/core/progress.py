"""A progress line for long byte-moving commands (image load, import, save).

Shown only on a terminal: a pipe or a log file gets nothing, so scripts and
captured output stay clean. The line rewrites itself at most ten times a
second and ends with the final count.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

_REDRAW_EVERY = 0.1  # seconds


def human_size(n: int) -> str:
    """Bytes in docker's decimal units: ``512B``, ``1.5kB``, ``12.3MB``."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{n}B"


class ProgressLine:
    """Counts bytes (call it with each chunk's size) and shows ``LABEL: done / total (pct%)``.

    Use as a context manager; ``total`` may be None when unknown (standard
    input). ``quiet`` or a ``stream`` that is not a terminal turns it off.
    """

    def __init__(
        self, label: str, total: int | None, *, quiet: bool = False, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self._drawn_at = 0.0

    def __call__(self, count: int) -> None:
        self.done += count
        if self.enabled and time.monotonic() - self._drawn_at >= _REDRAW_EVERY:
            self._draw()

    def _draw(self) -> None:
        text = f"{self.label}: {human_size(self.done)}"
        if self.total:
            shown = min(self.done, self.total)
            text += f" / {human_size(self.total)} ({shown * 100 // self.total}%)"
        # \r and "erase to end of line": the line rewrites itself in place
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self._drawn_at = time.monotonic()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self.enabled:
            return
        if kind is None:
            if self.total:
                self.done = max(self.done, self.total)  # trailing tar padding is not counted
            self._draw()
        # end the line, so what follows (a result or an error) starts on its own
        self.stream.write("\n" if self._drawn_at else "")
        self.stream.flush()
