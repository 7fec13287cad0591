"""The accept loop both HTTP servers run: a daemon thread per connection, until stopped."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class Acceptor:
    """Hands every connection accepted on ``listener`` to ``serve``, each on its own thread."""

    def __init__(
        self, listener: socket.socket, serve: Callable[[socket.socket], None], name: str
    ) -> None:
        self.listener = listener
        self.serve = serve
        self.name = name
        self.stopping = threading.Event()

    def run(self) -> None:
        """Accept until `stop`; an accept that fails otherwise is raised."""
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                raise
            threading.Thread(target=self.serve, args=(sock,), name=self.name, daemon=True).start()

    def stop(self) -> None:
        """Stop accepting; connections being served go on in their threads."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
