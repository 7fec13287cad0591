"""What a running plugin server reports about itself (``GET /cargohold/status``), and asking it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cargohold.core.api.clock import utc_now
from cargohold.core.api.errors import CargoholdError, NotFound, Unavailable
from cargohold.core.volumes.names import validate_driver_name
from cargohold.core.volumes.service import VolumeService

STATUS_PATH = "/cargohold/status"
#: How many recent failures the status keeps.
KEPT_ERRORS = 20


class Health:
    """Counts requests and remembers the last errors of one served plugin."""

    def __init__(self, plugin: str, driver: str, address: str = "") -> None:
        self.plugin = plugin
        self.driver = driver
        self.address = address
        #: every plugin this process serves, as (plugin, driver)
        self.siblings: list[tuple[str, str]] = [(plugin, driver)]
        self.started_at = utc_now("milliseconds")
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._errors: deque[dict[str, Any]] = deque(maxlen=KEPT_ERRORS)
        self._error_total = 0
        self._missing: Counter[str] = Counter()

    def count(self, method: str) -> None:
        with self._lock:
            self._requests[method] += 1

    def failed(
        self, method: str, volume: str | None, message: str, status: int, *, missing: bool = False
    ) -> None:
        """Record a failed call; ``missing`` ones (no such volume) are only counted:
        the engine asks Get before every Create, so they are routine, not errors."""
        if missing:
            with self._lock:
                self._missing[method] += 1
            return
        entry = {
            "time": utc_now("milliseconds"),
            "method": method,
            "volume": volume,
            "status": status,
            "error": message,
        }
        with self._lock:
            self._errors.append(entry)
            self._error_total += 1

    def report(self, volumes: VolumeService) -> dict[str, Any]:
        """The status document: what is served, what exists, what is mounted, what failed."""
        served = volumes.list({"driver": {self.driver}})
        with self._lock:
            requests = dict(self._requests)
            errors = list(self._errors)
            error_total = self._error_total
            missing = dict(self._missing)
        return {
            "plugin": self.plugin,
            "driver": self.driver,
            "pid": os.getpid(),
            "address": self.address,
            "started_at": self.started_at,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "served": [{"plugin": p, "driver": d} for p, d in self.siblings],
            "volumes": [
                {
                    "name": v.name,
                    "mountpoint": v.mountpoint,
                    "created_at": v.created_at,
                    "ref_count": v.ref_count,
                }
                for v in served
            ],
            "active_mounts": [
                {"volume": v.name, "id": ref, "count": count, "mountpoint": v.mountpoint}
                for v in served
                for ref, count in sorted(v.refs.items())
            ],
            "requests": requests,
            "error_count": error_total,
            "last_errors": errors,
            # answers "no such volume", by call: apart from errors (see `failed`)
            "no_such_volume": missing,
        }


# -- asking a running server ----------------------------------------------------


def fetch_status(target: str, timeout: float = 10) -> dict[str, Any]:
    """The status document of the plugin named ``target`` (or at socket path ``target``)."""
    url, tls = _locate(target)
    conn = _connection(url, tls, timeout)
    try:
        conn.request("GET", STATUS_PATH)
        response = conn.getresponse()
        body = response.read()
    except OSError as err:
        raise Unavailable(f"plugin {target} at {url} does not answer: {err}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise Unavailable(
            f"plugin {target} at {url} answered {response.status} to {STATUS_PATH}: "
            "is it a cargohold server? (status is cargohold's own endpoint)"
        )
    report: dict[str, Any] = json.loads(body)
    return report


def _locate(target: str) -> tuple[str, Any]:
    """The plugin's URL and TLS settings, found as the engine finds plugins."""
    if "/" in target or target.endswith(".sock"):
        return f"unix://{Path(target).absolute()}", None
    try:
        from cargohold.plugins.docker import discovery
    except ImportError:  # the client side is optional for the server
        from cargohold.plugins.docker.listen import socket_dir

        path = socket_dir() / f"{validate_driver_name(target)}.sock"
        if not path.exists():
            raise NotFound(f"no plugin socket {path}: is the server running?") from None
        return f"unix://{path}", None
    found = discovery.require_plugin(target)
    return found.url, found.tls


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            raise Unavailable(f"cannot connect to {self.path}: {err.strerror}") from None
        self.sock = sock


def _connection(url: str, tls: Any, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return UnixHTTPConnection(parts.path, timeout)
    if parts.hostname is None or parts.port is None:
        raise CargoholdError(f"plugin address {url!r} has no host:port")
    if parts.scheme != "https":
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    context = ssl.create_default_context(cafile=getattr(tls, "ca_file", None))
    if tls is None or getattr(tls, "insecure_skip_verify", False):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = getattr(tls, "cert_file", None), getattr(tls, "key_file", None)
    if cert and key:
        context.load_cert_chain(cert, key)
    return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
