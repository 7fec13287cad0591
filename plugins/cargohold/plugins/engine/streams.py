"""Docker's streams over a hijacked connection: stdcopy framing, stdin relays.

Without a TTY, each chunk goes in a frame: one byte naming the stream (0
stdin, 1 stdout, 2 stderr, 3 an error of the daemon), three zero bytes, the
length as a big-endian uint32, then the bytes. With a TTY the stream is raw.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterable

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
#: the API version from which the daemon says which of the two it sends
MULTIPLEXED_SINCE = (1, 42)
STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2, "system": 3}


def frame(stream: str, data: bytes) -> bytes:
    return struct.pack(">BxxxL", STREAM_IDS[stream], len(data)) + data


def content_type(tty: bool, api: tuple[int, int]) -> str:
    return MULTIPLEXED if not tty and api >= MULTIPLEXED_SINCE else RAW


def encode(records: Iterable[tuple[str, bytes]], *, tty: bool) -> Iterable[bytes]:
    for stream, data in records:
        if data:
            yield data if tty else frame(stream, data)


def send_all(sock: socket.socket, chunks: Iterable[bytes]) -> bool:
    """Send every chunk; False once the client has gone."""
    try:
        for chunk in chunks:
            sock.sendall(chunk)
    except OSError:
        return False
    return True


def finish(sock: socket.socket) -> None:
    """Close a hijacked connection: the client reads EOF and moves on."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def relay_input(
    sock: socket.socket, pending: bytes, write: Callable[[bytes], None], done: Callable[[], None]
) -> threading.Thread:
    """In a thread: what the client sends (``pending`` first) into ``write``; then ``done()``."""

    def run() -> None:
        try:
            if pending:
                write(pending)
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                write(chunk)
        except OSError:
            return
        finally:
            done()

    thread = threading.Thread(target=run, name="engine-stdin", daemon=True)
    thread.start()
    return thread
