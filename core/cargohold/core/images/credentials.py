"""Registry logins: a credentials file (mode 0600) under the state directory.

``<state>/registry-auth.json`` has docker's ``config.json`` shape,
``{"auths": {"<host>": {"auth": base64("user:password")}}}``, so it reads the
same; it is written to a temporary file created with mode 0600 and renamed,
so no reader ever sees it half-written or with wider permissions. A password
is given as a secret reference (``env:NAME``, ``file:/path``) resolved through
the plugins, or typed at a prompt; the value never reaches a log or an error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import InvalidArgument
from cargohold.core.images.distribution import DOCKER_HUB, Credentials, Registry
from cargohold.core.volumes.secret_refs import resolve

FILE_NAME = "registry-auth.json"
INSECURE_ENV = "CARGOHOLD_INSECURE_REGISTRIES"


def normalize_host(registry: str) -> str:
    """``https://127.0.0.1:5000/`` -> ``127.0.0.1:5000``; Docker Hub's names -> ``docker.io``."""
    host = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    host = host.split("/", 1)[0]
    if host in ("", "index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB
    return host


class CredentialStore:
    """Logins per registry host, kept in one 0600 file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"auths": {}}
        except (OSError, ValueError) as err:
            raise InvalidArgument(
                f"the credentials file {self.path} is unreadable ({type(err).__name__}); "
                "remove it and log in again"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("auths"), dict):
            return {"auths": {}}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".registry-auth-", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, registry: str) -> Credentials | None:
        entry = self._read()["auths"].get(normalize_host(registry))
        if not isinstance(entry, dict) or not entry.get("auth"):
            return None
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, TypeError):
            return None
        return Credentials(user, password) if sep else None

    def set(self, registry: str, credentials: Credentials) -> None:
        data = self._read()
        pair = f"{credentials.username}:{credentials.password}".encode()
        data["auths"][normalize_host(registry)] = {"auth": base64.b64encode(pair).decode()}
        self._write(data)

    def remove(self, registry: str) -> bool:
        """Forget a login; False if there was none."""
        data = self._read()
        if data["auths"].pop(normalize_host(registry), None) is None:
            return False
        self._write(data)
        return True


def resolve_password(hook: Any, ref: str) -> str:
    """The password a secret reference (``env:NAME``, ``file:/path``) names."""
    return resolve(hook, "password", ref)


def insecure_hosts(given: Iterable[str] = ()) -> set[str]:
    """Hosts allowed plain HTTP: those given plus ``$CARGOHOLD_INSECURE_REGISTRIES``."""
    hosts = {normalize_host(h) for h in given if h.strip()}
    hosts |= {normalize_host(h) for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}
    return hosts


def open_registry(
    state_dir: Path,
    host: str,
    *,
    insecure: Iterable[str] = (),
    credentials: Credentials | None = None,
) -> Registry:
    """A `Registry` for ``host`` with the stored login (unless ``credentials`` are given)."""
    host = normalize_host(host)
    login = credentials or CredentialStore(state_dir).get(host)
    return Registry(
        host,
        login,
        insecure=insecure_hosts(insecure),
        cert_dirs=[state_dir / "certs.d", Path("/etc/docker/certs.d")],
    )
