"""Basic auth over TLS with a real registry: login, logout, the credentials file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .conftest import PASSWORD, USER, cargohold, ok, trust
from .server import RegistryServer
from .tokenserver import TokenServer

pytestmark = pytest.mark.root


def _image(state: Path, tmp_path: Path, name: str) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    (rootfs / "hello").write_text("hello\n")
    import shutil

    shutil.make_archive(str(tmp_path / "rootfs"), "tar", rootfs)
    ok(cargohold("import", str(tmp_path / "rootfs.tar"), name, state=state))


def test_untrusted_certificate_is_refused(auth_registry: RegistryServer, tmp_path: Path) -> None:
    result = cargohold("pull", f"{auth_registry.host}/x:1", state=tmp_path / "state")
    assert result.returncode == 1
    assert "certificate is not trusted" in result.stderr
    assert f"certs.d/{auth_registry.host}/ca.crt" in result.stderr


def test_login_push_pull_logout(auth_registry: RegistryServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    trust(state, auth_registry)
    host = auth_registry.host
    name = f"{host}/private/app:1"
    _image(state, tmp_path, name)

    anonymous = cargohold("push", name, state=state)
    assert anonymous.returncode == 1
    assert "unauthorized" in anonymous.stderr and "cargohold login" in anonymous.stderr

    wrong = cargohold(
        "login",
        "-u",
        USER,
        "-p",
        "env:REG_PASS",
        host,
        state=state,
        env={"REG_PASS": "not-the-password"},
    )
    assert wrong.returncode == 1
    assert "unauthorized" in wrong.stderr.lower()
    assert "not-the-password" not in wrong.stdout + wrong.stderr
    assert not (state / "registry-auth.json").exists()

    pasted = cargohold("login", "-u", USER, "-p", PASSWORD, host, state=state)
    assert pasted.returncode == 1
    assert PASSWORD not in pasted.stdout + pasted.stderr  # a pasted value is never echoed

    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    logged = ok(cargohold("login", "-u", USER, "-p", f"file:{secret}", host, state=state))
    assert logged.strip() == "Login Succeeded"
    creds = state / "registry-auth.json"
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert PASSWORD not in creds.read_text()  # base64, as docker's config.json

    pushed = ok(cargohold("push", name, state=state))
    assert "Pushed" in pushed
    other = tmp_path / "other"
    trust(other, auth_registry)
    ok(cargohold("login", "-u", USER, "--password-stdin", host, state=other, input=PASSWORD))
    pulled = ok(cargohold("pull", name, state=other))
    assert "Downloaded newer image" in pulled
    assert ok(cargohold("logout", host, state=other)).strip() == (
        f"Removing login credentials for {host}"
    )
    assert ok(cargohold("logout", host, state=other)).strip() == f"Not logged in to {host}"
    ok(cargohold("rmi", name, state=other))
    refused = cargohold("pull", name, state=other)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr


def test_bearer_token_flow(
    token_registry: tuple[RegistryServer, TokenServer], tmp_path: Path
) -> None:
    """Anonymous pulls get a pull token; a push needs a login; a wrong password is refused."""
    server, tokens = token_registry
    state = tmp_path / "state"
    name = f"{server.host}/team/tool:1"
    _image(state, tmp_path, name)
    anonymous = cargohold("push", name, state=state)
    assert anonymous.returncode == 1
    assert "(HTTP 401)" in anonymous.stderr or "(HTTP 403)" in anonymous.stderr

    wrong = cargohold(
        "login", "-u", USER, "--password-stdin", server.host, state=state, input="wrong"
    )
    assert wrong.returncode == 1
    assert "incorrect username or password" in wrong.stderr and "wrong" not in wrong.stdout
    ok(cargohold("login", "-u", USER, "--password-stdin", server.host, state=state, input=PASSWORD))
    assert "Pushed" in ok(cargohold("push", name, state=state))
    assert any(
        r["user"] == USER and "repository:team/tool:pull,push" in r["scopes"]
        for r in tokens.requests
    )

    reader = tmp_path / "reader"  # no login: the token server grants pull
    assert "Pull complete" in ok(cargohold("pull", name, state=reader))
    assert any(
        r["user"] is None and r["scopes"] == ["repository:team/tool:pull"] for r in tokens.requests
    )
