"""The accept loop both HTTP servers run: a daemon thread per connection, until stopped."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Connections served at once; more are closed at once, so a flood cannot exhaust threads.
MAX_CONNECTIONS = 256


class Acceptor:
    """Hands every connection accepted on ``listener`` to ``serve``, each on its own thread."""

    def __init__(
        self,
        listener: socket.socket,
        serve: Callable[[socket.socket], None],
        name: str,
        *,
        limit: int = MAX_CONNECTIONS,
    ) -> None:
        self.listener = listener
        self.serve = serve
        self.name = name
        self.limit = limit
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(limit)

    def run(self) -> None:
        """Accept until `stop`; an accept that fails otherwise is raised."""
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                raise
            if not self._slots.acquire(blocking=False):
                log.warning("%s: refusing a connection, %d are open", self.name, self.limit)
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock,), name=self.name, daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.serve(sock)
        finally:
            self._slots.release()

    def stop(self) -> None:
        """Stop accepting; connections being served go on in their threads."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
