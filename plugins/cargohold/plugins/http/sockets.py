"""Claiming a unix socket path for a server, the one way both frontends do it.

A server that crashed leaves its socket file behind, and a client connecting
to it hangs or fails (the Docker engine waits ~15 s per dead plugin socket).
So a socket nobody answers on is replaced; a live one, or a file that is not
a socket at all, is refused rather than stolen or destroyed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import stat
from pathlib import Path

from cargohold.core.api.errors import Conflict

log = logging.getLogger(__name__)

#: sun_path holds 108 bytes with the terminating NUL.
MAX_UNIX_PATH = 107


def is_live_unix(path: Path, timeout: float = 2) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as err:
        return err.errno == errno.EAGAIN  # a full backlog: someone is there
    finally:
        probe.close()
    return True


def claim_unix_socket(
    path: Path, *, kind: str = "socket", remedy: str = "stop it first", make_parent: bool = False
) -> None:
    """Make ``path`` free to bind: remove a dead server's socket, refuse anything else.

    ``kind`` names the socket in messages ("plugin socket"); ``remedy`` ends
    the refusal of a live socket: what the user can do instead (such as "stop
    it, or pick another --name"). With ``make_parent``, a missing parent
    directory is created (mode 0755).
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        if make_parent:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(mode):
        raise Conflict(f"{path} exists and is not a socket: move it away, then start again")
    if is_live_unix(path):
        raise Conflict(f"another program is listening on {path}: {remedy}")
    log.warning("removing stale %s %s (nothing listens on it)", kind, path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
