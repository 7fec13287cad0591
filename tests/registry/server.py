"""A real registry (Debian's docker-registry, distribution 2.8) on a loopback port.

Started per fixture with its own config and storage directory, optionally
with htpasswd basic auth (bcrypt) and TLS from a throwaway CA; stopped and
removed afterwards, even on failure.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"


def registry_missing_reason() -> str | None:
    if not Path(REGISTRY).exists():
        return "docker-registry is not installed (bash .ci/setup installs it)"
    return None


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@dataclass
class RegistryServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    address: str
    tls_ca: Path | None = None
    user: str | None = None
    password: str | None = None

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def blob_file(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _htpasswd(path: Path, user: str, password: str) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")


def start_registry(
    root: Path,
    *,
    user: str | None = None,
    password: str | None = None,
    tls: tuple[Path, Path, Path] | None = None,
    token: tuple[str, str, str, Path] | None = None,
    address: str = "127.0.0.1",
) -> RegistryServer:
    """``tls`` is (ca, certificate, key); ``token`` (realm, service, issuer, cert bundle)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(address)
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'storage'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {address}:{port}",
    ]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls[1]}", f"    key: {tls[2]}"]
    if user is not None and password is not None:
        _htpasswd(root / "htpasswd", user, password)
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: cargohold-test",
            f"    path: {root / 'htpasswd'}",
        ]
    if token is not None:
        realm, service, issuer, bundle = token
        lines += [
            "auth:",
            "  token:",
            f"    realm: {realm}",
            f"    service: {service}",
            f"    issuer: {issuer}",
            f"    rootcertbundle: {bundle}",
        ]
    (root / "config.yml").write_text("\n".join(lines) + "\n")
    log = open(root / "registry.log", "ab")  # noqa: SIM115 - lives as long as the registry
    process = subprocess.Popen(
        [REGISTRY, "serve", str(root / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = RegistryServer(root, port, process, address, tls[0] if tls else None, user, password)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{(root / 'registry.log').read_text()}")
        try:
            if tls is not None:
                context = ssl.create_default_context(cafile=str(tls[0]))
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    server.host, timeout=2, context=context
                )
            else:
                conn = http.client.HTTPConnection(server.host, timeout=2)
            conn.request("GET", "/v2/")
            answer = conn.getresponse()
            conn.close()
            if answer.getheader("Docker-Distribution-Api-Version"):
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"docker-registry did not answer:\n{(root / 'registry.log').read_text()}")


def stop_registry(server: RegistryServer) -> None:
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
