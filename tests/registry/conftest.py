"""Registries for the tests: a plain one, and one with htpasswd basic auth over TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..containers.conftest import busybox_rootfs, rt  # noqa: F401 - fixtures of the daemon
from ..docker.tlsfiles import make_tls_files
from ..engine_api.conftest import daemon  # noqa: F401 - a cargohold daemon, for the docker CLI
from ..realdocker import DockerEngine
from .server import RegistryServer, registry_missing_reason, start_registry, stop_registry
from .tokenserver import ISSUER, SERVICE, TokenServer

CARGOHOLD = Path(sys.executable).parent / "cargohold"
USER = "tester"
PASSWORD = "s3cret-Pa55"


def cargohold(
    *args: str, state: Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The cargohold command on a private state directory."""
    return subprocess.run(
        [str(CARGOHOLD), *args],
        env={**os.environ, "CARGOHOLD_STATE_DIR": str(state), **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def trust(state: Path, server: RegistryServer) -> None:
    """Put the registry's CA where cargohold looks: <state>/certs.d/<host>/ca.crt."""
    assert server.tls_ca is not None
    folder = state / "certs.d" / server.host
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(server.tls_ca.read_bytes())


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry without auth on a loopback port, plain HTTP."""
    reason = registry_missing_reason()
    if reason:
        pytest.skip(reason)
    server = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        stop_registry(server)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry with htpasswd basic auth (bcrypt) and TLS from a throwaway CA."""
    reason = registry_missing_reason()
    if reason:
        pytest.skip(reason)
    tls = make_tls_files(tmp_path_factory.mktemp("registry-tls"))
    server = start_registry(
        tmp_path_factory.mktemp("auth-registry"),
        user=USER,
        password=PASSWORD,
        tls=(tls.ca, tls.server_cert, tls.server_key),
    )
    try:
        yield server
    finally:
        stop_registry(server)


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RegistryServer, TokenServer]]:
    """A registry behind a token server (``WWW-Authenticate: Bearer``), plain HTTP."""
    reason = registry_missing_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(root, USER, PASSWORD)
    try:
        server = start_registry(
            root / "registry", token=(tokens.realm, SERVICE, ISSUER, tokens.bundle)
        )
        try:
            yield server, tokens
        finally:
            stop_registry(server)
    finally:
        tokens.stop()


@pytest.fixture(scope="session")
def engine_image(docker_engine: DockerEngine, busybox_image: str) -> Iterator[str]:
    """A three-layer image inside the real engine: busybox, files added, one deleted."""
    tag = "cargohold-registry-src:test"
    steps = [
        "mkdir -p /data/sub && echo one > /data/a && echo two > /data/sub/b && echo x > /gone",
        "rm /gone && echo three > /data/sub/c && busybox chmod 600 /data/a",
    ]
    image = busybox_image
    made = []
    for number, step in enumerate(steps):
        name = f"cargohold-registry-step{number}"
        docker_engine.docker("run", "--name", name, "--network", "none", image, "sh", "-c", step)
        docker_engine.docker("commit", "-c", 'CMD ["sh"]', name, f"{tag}{number}")
        docker_engine.docker("rm", name)
        image = f"{tag}{number}"
        made.append(image)
    docker_engine.docker("tag", image, tag)
    try:
        yield tag
    finally:
        docker_engine.docker("rmi", "-f", tag, *made, check=False)
