"""The unchanged docker CLI against ``cargohold daemon``: pull, push, login, classic build."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..containers.conftest import IMAGE
from ..engine_api.conftest import Daemon
from .conftest import PASSWORD, USER
from .server import RegistryServer

pytestmark = pytest.mark.root


def _docker(
    daemon: Daemon,
    *args: str,
    input: str | None = None,
    home: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    extra = {"DOCKER_CONFIG": str(home)} if home else {}
    return subprocess.run(
        ["docker", *args],
        env={**daemon.env, **extra, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_docker_push_pull_through_the_daemon(
    daemon: Daemon,
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    name = f"{registry.host}/api/bb:1"
    assert _docker(daemon, "tag", IMAGE, name).returncode == 0
    pushed = _docker(daemon, "push", name)
    assert pushed.returncode == 0, pushed.stderr
    assert "digest: sha256:" in pushed.stdout
    assert _docker(daemon, "rmi", name).returncode == 0
    assert _docker(daemon, "rmi", IMAGE).returncode == 0
    pulled = _docker(daemon, "pull", name)
    assert pulled.returncode == 0, pulled.stderr
    assert f"Status: Downloaded newer image for {name}" in pulled.stdout
    run = _docker(daemon, "run", "--rm", name, "echo", "pulled through the daemon")
    assert run.stdout == "pulled through the daemon\n", run.stderr
    missing = _docker(daemon, "pull", f"{registry.host}/api/none:1")
    assert missing.returncode != 0 and "manifest unknown" in missing.stderr


def test_docker_login_through_the_daemon(
    daemon: Daemon,
    auth_registry: RegistryServer,
    tmp_path: Path,
) -> None:
    """docker login asks the daemon (POST /auth), which asks the registry."""
    folder = daemon.state_dir / "certs.d" / auth_registry.host
    folder.mkdir(parents=True)
    assert auth_registry.tls_ca is not None
    (folder / "ca.crt").write_bytes(auth_registry.tls_ca.read_bytes())
    home = tmp_path / "docker-config"
    wrong = _docker(
        daemon, "login", "-u", USER, "--password-stdin", auth_registry.host, input="nope", home=home
    )
    assert wrong.returncode != 0 and "unauthorized" in wrong.stderr.lower()
    good = _docker(
        daemon,
        "login",
        "-u",
        USER,
        "--password-stdin",
        auth_registry.host,
        input=PASSWORD,
        home=home,
    )
    assert good.returncode == 0, good.stderr
    assert "Login Succeeded" in good.stdout
    name = f"{auth_registry.host}/api/private:1"
    assert _docker(daemon, "tag", IMAGE, name).returncode == 0
    pushed = _docker(daemon, "push", name, home=home)  # the CLI sends X-Registry-Auth
    assert pushed.returncode == 0, pushed.stderr


def test_classic_docker_build_through_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "hello.txt").write_text("hello from the context\n")
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copy.txt\n"
    )
    env = {"DOCKER_BUILDKIT": "0"}
    built = _docker(daemon, "build", "-t", "api-built:1", str(context), env=env)
    assert built.returncode == 0, built.stderr
    assert "Step 3/3 : RUN cat /hello.txt > /copy.txt" in built.stdout
    assert "Successfully tagged api-built:1" in built.stdout
    again = _docker(daemon, "build", "-t", "api-built:1", str(context), env=env)
    assert again.stdout.count("Using cache") == 2
    run = _docker(daemon, "run", "--rm", "api-built:1", "cat", "/copy.txt")
    assert run.stdout == "hello from the context\n"
    (context / "Dockerfile").write_text(f"FROM {IMAGE}\nBOGUS thing\n")
    bad = _docker(daemon, "build", str(context), env=env)
    assert bad.returncode != 0 and "unknown instruction: BOGUS" in bad.stderr
