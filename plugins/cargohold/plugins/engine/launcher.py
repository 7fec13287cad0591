"""A warm shim launcher: container supervisors forked from a ready interpreter.

A fresh ``python -m cargohold.core.shim`` pays the interpreter's start-up
and every import again (most of a container start). The daemon instead forks
this helper at start-up, while it is still one thread and has opened no
database: the helper imports the container machinery once, then, for each
start, forks a supervisor that is already warm. The supervisor double-forks
into its own session, so it outlives the helper and the daemon, as a shim
started by ``cargohold start`` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any


class WarmLauncher:
    """A `cargohold.core.containers.supervisor.Launcher` backed by a forking helper."""

    def __init__(self, state_dir: Path, plugin_manager: Any) -> None:
        # everything a supervisor imports, imported once here
        import cargohold.core.containers.service
        import cargohold.core.containers.supervisor
        import cargohold.core.images.store
        import cargohold.core.runtime
        import cargohold.core.shim  # noqa: F401

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the helper
            ours.close()
            try:
                _serve(theirs, state_dir, plugin_manager)
            finally:
                os._exit(0)
        theirs.close()
        self.helper = pid
        self.sock = ours
        self.lock = threading.Lock()

    def __call__(self, state_dir: str, container_id: str, ready_fd: int) -> None:
        with self.lock:
            socket.send_fds(self.sock, [container_id.encode()], [ready_fd])

    def close(self) -> None:
        self.sock.close()  # the helper reads EOF and exits
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.helper, 0)


def _serve(sock: socket.socket, state_dir: Path, plugin_manager: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C at the daemon's terminal is the daemon's
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 256, 1)
        except OSError:
            return
        if not message:
            return
        container_id = message.decode()
        (ready_fd,) = fds
        middle = os.fork()
        if middle == 0:
            if os.fork() == 0:
                sock.close()
                os._exit(_supervise(state_dir, plugin_manager, container_id, ready_fd))
            os._exit(0)
        os.close(ready_fd)
        os.waitpid(middle, 0)


def _supervise(state_dir: Path, plugin_manager: Any, container_id: str, ready_fd: int) -> int:
    from cargohold.core import shim
    from cargohold.core.runtime import Runtime

    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log_path = state_dir / "containers" / container_id / "shim.log"
    try:
        out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        with Runtime(state_dir, plugin_manager=plugin_manager) as runtime:
            return shim.supervise(runtime, container_id, ready_fd)
    except BaseException as err:  # never back into the helper's loop
        with contextlib.suppress(OSError):
            os.write(ready_fd, f"125\nthe supervisor failed: {err}".encode())
        print(f"supervisor of {container_id}: {err!r}", file=sys.stderr)
        return 125
