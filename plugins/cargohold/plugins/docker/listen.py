"""Where a served plugin listens, made so the engine never sees a half-ready plugin.

A unix socket is bound under a private name, given its mode and group, put
to listening, and only then renamed to ``<dir>/<name>.sock``: the engine
finds a socket only once it answers. A TCP plugin gets a ``.spec`` (plain) or
``.json`` (TLS) file written the same way. A per-name lock held for the
server's life tells a live cargohold server from the leftovers of a crashed
one, so a crash's stale socket is replaced and a live server is never robbed.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import logging
import os
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cargohold.core.api.errors import Conflict, InvalidArgument
from cargohold.plugins.http.sockets import MAX_UNIX_PATH, claim_unix_socket, is_live_unix

log = logging.getLogger(__name__)

# The engine looks in these fixed places; the variables (shared with the
# client's discovery) move them for tests and unusual hosts.
SOCKET_DIR = Path("/run/docker/plugins")
SPEC_DIR = Path("/etc/docker/plugins")
SOCKET_DIR_ENV = "CARGOHOLD_PLUGIN_SOCKET_DIR"
SPEC_DIRS_ENV = "CARGOHOLD_PLUGIN_SPEC_DIRS"
#: Private corner of the socket directory: the engine's scan skips it.
PRIVATE = ".cargohold"
SOCKET_MODE = 0o660
MAX_TLS_CONNECTIONS = 128


def socket_dir() -> Path:
    return Path(os.environ.get(SOCKET_DIR_ENV) or SOCKET_DIR)


def spec_dir() -> Path:
    """Where spec files are written: the first directory the engine searches."""
    configured = [p for p in os.environ.get(SPEC_DIRS_ENV, "").split(":") if p]
    return Path(configured[0]) if configured else SPEC_DIR


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate and key; ``ca`` makes client certificates required.

    ``client_cert``/``client_key`` are what the engine should present: they
    only go into the ``.json`` file the engine reads.
    """

    cert: Path
    key: Path
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
            if self.ca is not None:
                context.load_verify_locations(cafile=self.ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as err:
            raise InvalidArgument(
                f"cannot load TLS files (cert {self.cert}, key {self.key}, ca {self.ca}): {err}"
            ) from None
        return context


class NameLock:
    """An exclusive ``flock`` on ``<socket dir>/.cargohold/<name>.lock``, held while serving."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / PRIVATE / f"{name}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # a stopping server removed the empty directory just now
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                name = self.path.name.removesuffix(".lock")
                raise Conflict(
                    f"plugin {name} is already served by a running cargohold (pid {owner}): "
                    "stop that server first, or pick another --name"
                ) from None
            # The previous holder unlinks the file as it stops: lock the file that is there.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # while still held, so no one can lock the old file
            os.close(self._fd)
            self._fd = None
            # Leave nothing in the engine's plugin directory once the last server stops.
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def is_live_tcp(url: str) -> bool:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError:
        return False
    return True


def clear_stale_socket(path: Path) -> None:
    """Remove a socket nobody listens on (a crash's leftover); refuse anything else."""
    claim_unix_socket(path, kind="plugin socket", remedy="stop it, or pick another --name")


def bind_unix(path: Path) -> socket.socket:
    """A listening socket at ``path``, mode 0660 and group ``docker`` where it exists."""
    if len(str(path).encode()) > MAX_UNIX_PATH:
        raise InvalidArgument(
            f"socket path {path} is longer than {MAX_UNIX_PATH} bytes: use a shorter name"
        )
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    private = path.parent / PRIVATE
    private.mkdir(mode=0o700, exist_ok=True)
    staging = private / f"{path.stem}.{os.getpid()}.sock"
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staging))
        os.chmod(staging, SOCKET_MODE)
        with contextlib.suppress(KeyError):
            os.chown(staging, -1, grp.getgrnam("docker").gr_gid)
        sock.listen(128)
        os.rename(staging, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise
    return sock


def bind_private_unix(path: Path) -> socket.socket:
    """A listening unix socket in a private directory (the TLS relay's backend)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(128)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise InvalidArgument(f"cannot listen on {host}:{port}: {err}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise Conflict(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def write_spec(directory: Path, name: str, url: str, tls: TlsFiles | None) -> Path:
    """Write ``<name>.spec`` (or ``<name>.json`` with TLS) atomically; refuse a live one."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = directory / f"{name}.json" if tls else directory / f"{name}.spec"
    for existing in (directory / f"{name}.spec", directory / f"{name}.json"):
        _clear_stale_spec(existing)
    if tls:
        config: dict[str, object] = {"InsecureSkipVerify": False}
        if tls.ca is not None:
            config["CAFile"] = str(tls.ca)
        if tls.client_cert is not None and tls.client_key is not None:
            config["CertFile"] = str(tls.client_cert)
            config["KeyFile"] = str(tls.client_key)
        text = json.dumps({"Name": name, "Addr": url, "TLSConfig": config}, indent=2) + "\n"
    else:
        text = url + "\n"
    staging = directory / f".{target.name}.{os.getpid()}"
    staging.write_text(text)
    os.chmod(staging, 0o644)
    os.rename(staging, target)
    return target


def _clear_stale_spec(path: Path) -> None:
    if not path.is_file():
        return
    text = path.read_text(errors="replace").strip()
    url = text
    if path.suffix == ".json":
        with contextlib.suppress(ValueError, AttributeError):
            url = str(json.loads(text).get("Addr", ""))
    unix = url.startswith("unix://")
    if is_live_unix(Path(urlsplit(url).path)) if unix else is_live_tcp(url):
        raise Conflict(
            f"{path} names a plugin that is answering at {url}: stop it, or pick another --name"
        )
    log.warning("replacing stale plugin file %s (nothing answers at %s)", path, url)
    path.unlink()


def remove_if_same(path: Path, identity: tuple[int, int] | None) -> None:
    """Unlink ``path`` only if it is still the file we made (same device and inode)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if identity is None or (info.st_dev, info.st_ino) == identity:
        path.unlink()
    else:
        log.warning("%s was replaced by someone else; leaving it", path)


def identity(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_dev, info.st_ino


class TlsFrontend:
    """Terminates TLS for a TCP plugin and relays each connection to a private socket.

    The call server speaks plain HTTP only, so TLS (with client certificates when a
    CA is given) is handled here and the bytes go on to the app's own socket.
    """

    def __init__(self, listener: socket.socket, context: ssl.SSLContext, backend: Path) -> None:
        self.listener = listener
        self.context = context
        self.backend = backend
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tls-frontend", daemon=True)
        # one thread per connection: a bound keeps a flood from exhausting the process
        self._slots = threading.BoundedSemaphore(MAX_TLS_CONNECTIONS)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self._closing.is_set():
                    return
                continue
            if not self._slots.acquire(blocking=False):
                log.warning("refusing a TLS connection: %d are open", MAX_TLS_CONNECTIONS)
                conn.close()
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            self._relay_one(conn)
        finally:
            self._slots.release()

    def _relay_one(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            secure = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as err:
            log.warning("TLS handshake refused: %s", err)
            conn.close()
            return
        plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            plain.connect(str(self.backend))
            _pump(secure, plain)
        except (OSError, ssl.SSLError) as err:
            log.debug("TLS connection ended: %s", err)
        finally:
            plain.close()
            secure.close()


def _pump(secure: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy bytes both ways until either side closes (one thread, no shared SSL state)."""
    with selectors.DefaultSelector() as selector:
        selector.register(secure, selectors.EVENT_READ)
        selector.register(plain, selectors.EVENT_READ)
        while True:
            # Decrypted bytes may wait inside the SSL object where select cannot see them.
            ready = [secure] if secure.pending() else [k.fileobj for k, _ in selector.select(300)]
            if not ready:
                return  # idle for five minutes
            for source in ready:
                if source is secure:
                    data = secure.recv(65536)
                    if not data:
                        return
                    plain.sendall(data)
                else:
                    data = plain.recv(65536)
                    if not data:
                        return
                    secure.sendall(data)
