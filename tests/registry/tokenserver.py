"""A token server for the registry's ``auth: token`` (the ``WWW-Authenticate: Bearer`` flow).

The real registry verifies the JWTs: ES256, signed by a key whose
certificate is in its ``rootcertbundle`` (sent in the ``x5c`` header).
Anonymous clients get ``pull`` on every repository they ask for; a client
with the right basic-auth user and password gets ``pull,push``; a wrong
password gets 401, as Docker Hub's token server answers.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ISSUER = "cargohold-test-issuer"
SERVICE = "cargohold-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, directory: Path, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cargohold token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = directory / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/token"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def _sign(self, claims: dict[str, Any]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        auth = request.headers.get("Authorization") or ""
        user = None
        if auth.startswith("Basic "):
            name, _, given = base64.b64decode(auth[6:]).decode().partition(":")
            if (name, given) != (self.user, self.password):
                request.send_response(401)
                request.send_header("Content-Type", "application/json")
                request.end_headers()
                request.wfile.write(b'{"details":"incorrect username or password"}')
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if a == "pull" or user is not None]
            access.append({"type": kind, "name": repo, "actions": allowed})
        self.requests.append({"user": user, "scopes": query.get("scope", [])})
        stamp = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": stamp + 300,
            "nbf": stamp - 10,
            "iat": stamp,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        body = json.dumps({"token": self._sign(claims), "expires_in": 300}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
