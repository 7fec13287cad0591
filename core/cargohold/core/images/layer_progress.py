"""One line per layer, as docker prints pulls and pushes.

On a terminal each layer's line is rewritten in place (cursor up, rewrite,
cursor down), with a bar while bytes move::

    1b930d010525: Downloading [=====>                          ]  1.2MB/3.4MB

Elsewhere (a pipe, a log) only status changes are printed, one line each
(``1b930d010525: Pull complete``), as docker does without a terminal. The
single-line `cargohold.core.progress.ProgressLine` cannot show parallel
transfers, hence this sibling; it shares its units (`human_size`).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from cargohold.core.progress import human_size

_BAR = 50
_REDRAW_EVERY = 0.1  # seconds, per layer


class LayerProgress:
    """Thread-safe: layers report from their own transfer threads."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.tty = not quiet and self.stream.isatty()
        self._order: list[str] = []
        self._text: dict[str, str] = {}
        self._drawn: dict[str, float] = {}
        self._lock = threading.Lock()

    def message(self, text: str) -> None:
        """A line of its own, below the layers (``Digest: ...``, ``Status: ...``)."""
        if self.quiet:
            return
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._order.clear()  # later layer lines start below this one

    def status(self, layer: str, text: str) -> None:
        """``layer``'s line becomes ``<layer>: <text>``."""
        self._show(layer, text, force=True)

    def transfer(self, layer: str, action: str, done: int, total: int | None) -> None:
        """A bar for bytes moving (shown on a terminal only)."""
        if not self.tty:
            return
        if total:
            filled = min(_BAR, done * _BAR // total)
            arrow = "=" * max(filled - 1, 0) + (">" if filled < _BAR else "=")
            text = f"{action} [{arrow:<{_BAR}}] {human_size(done):>7}/{human_size(total)}"
        else:
            text = f"{action} {human_size(done)}"
        self._show(layer, text, force=False)

    def _show(self, layer: str, text: str, *, force: bool) -> None:
        if self.quiet:
            return
        with self._lock:
            if not force and time.monotonic() - self._drawn.get(layer, 0.0) < _REDRAW_EVERY:
                return
            self._drawn[layer] = time.monotonic()
            if not self.tty:
                if self._text.get(layer) != text:
                    self.stream.write(f"{layer}: {text}\n")
                    self._text[layer] = text
                self.stream.flush()
                return
            line = f"{layer}: {text}"
            if layer not in self._order:
                self._order.append(layer)
                self.stream.write(line + "\n")
            else:
                up = len(self._order) - self._order.index(layer)
                # up to the layer's line, rewrite it, erase its tail, come back down
                self.stream.write(f"\x1b[{up}A\r{line}\x1b[K\x1b[{up}B\r")
            self._text[layer] = text
            self.stream.flush()
