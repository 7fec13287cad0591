"""Docker's json-file log format: one ``{"log", "stream", "time"}`` object a line.

The supervisor writes it (`pump`); ``logs`` reads it back (`read`).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from cargohold.core.api.clock import utc_now

#: As Docker's json-file driver: a line longer than this is split into records.
MAX_LINE = 16384


def write(logfile: BinaryIO, stream: str, *chunks: bytes) -> None:
    if not chunks:
        return
    stamp = utc_now("microseconds")
    records = [
        json.dumps({"log": c.decode("utf-8", "surrogateescape"), "stream": stream, "time": stamp})
        for c in chunks
    ]
    logfile.write(("\n".join(records) + "\n").encode("utf-8", "surrogateescape"))


class LineSplitter:
    """Cuts one stream's chunks into log records: whole lines, or pieces of MAX_LINE."""

    def __init__(self, logfile: BinaryIO, stream: str) -> None:
        self.logfile = logfile
        self.stream = stream
        self.partial = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        records = [line + b"\n" for line in lines]
        if len(self.partial) > MAX_LINE:
            records.append(self.partial)
            self.partial = b""
        write(self.logfile, self.stream, *records)

    def close(self) -> None:
        if self.partial:
            write(self.logfile, self.stream, self.partial)
            self.partial = b""


def pump(
    streams: dict[int, str],
    logfile: BinaryIO,
    *,
    echo: Callable[[str, bytes], None] | None = None,
) -> None:
    """Copy each fd of ``streams`` (fd -> ``stdout``/``stderr``) into the log until all close.

    ``echo`` also gets every chunk as it comes (``docker run`` in the foreground).
    """
    splitters = {fd: LineSplitter(logfile, name) for fd, name in streams.items()}
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(streams)
        while open_fds:
            for key, _ in selector.select():
                fd = int(key.fd)
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # a pty's master reads EIO once the last slave closes
                    chunk = b""
                if not chunk:
                    selector.unregister(fd)
                    open_fds.discard(fd)
                    splitters[fd].close()
                    continue
                if echo is not None:
                    with contextlib.suppress(OSError):
                        echo(streams[fd], chunk)
                splitters[fd].feed(chunk)


def read(
    path: Path, *, follow: Callable[[], bool] | None = None, offset: int = 0
) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) records of a log from byte ``offset``, oldest first.

    With ``follow``, keep waiting for more while ``follow()`` says the writer
    is still there; then read what is left and stop.
    """
    for stream, data, _ in read_timed(path, follow=follow, offset=offset):
        yield stream, data


def read_timed(
    path: Path, *, follow: Callable[[], bool] | None = None, offset: int = 0
) -> Iterator[tuple[str, bytes, str]]:
    """As `read`, with each record's time (``docker logs -t``)."""
    if follow is None and not path.exists():
        return
    while not path.exists():  # attached before the first start: the log comes with it
        if follow is None or not follow():
            return
        time.sleep(0.01)
    delay = 0.002
    with open(path, "rb") as file:
        file.seek(offset)
        while True:
            line = file.readline()
            if line.endswith(b"\n"):
                record = json.loads(line)
                data = record["log"].encode("utf-8", "surrogateescape")
                yield record["stream"], data, record.get("time", "")
                delay = 0.002
                continue
            file.seek(file.tell() - len(line))
            if follow is None:
                return
            if not follow():
                follow = None  # read what is left, then stop
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


def size(path: Path) -> int:
    """Where a reader that wants only what comes next starts (`read`'s ``offset``)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
