"""A client of the OCI distribution API (registry v2): references, transport, auth.

One `Registry` talks to one registry host. Each thread gets its own
`http.client` connection (they are not thread-safe), so layers move in
parallel; bearer tokens are shared between threads, per scope.

Auth follows the ``WWW-Authenticate`` challenge of a 401: ``Bearer`` asks the
named token server (with the stored user and password, if any, as basic
auth), ``Basic`` sends them directly. A password is never put into an error
message: every error raised here passes through `secret_refs.redact`.

Plain HTTP is used only for a host named as insecure, or a loopback one (as
dockerd trusts ``127.0.0.0/8`` by default), and only when the host does not
speak TLS at all: a certificate that fails verification is always an error.
Certificates of a private CA are read from ``<state>/certs.d/<host>/ca.crt``
or ``/etc/docker/certs.d/<host>/ca.crt``, as docker reads them.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import re
import ssl
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import (
    CargoholdError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from cargohold.core.volumes.secret_refs import redact

DOCKER_HUB = "docker.io"
_HUB_ENDPOINT = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMOTE = re.compile(
    rf"(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>\w[\w.-]{{0,127}}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)
_TIMEOUT = 60.0
USER_AGENT = "cargohold/0.1 (registry client)"


class Unauthorized(CargoholdError):
    """The registry refused the credentials (or wants some)."""

    http_status = 401


@dataclass(frozen=True)
class RemoteReference:
    """``registry/repository[:tag][@digest]``, e.g. ``127.0.0.1:5000/team/app:1``."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What ``/manifests/<reference>`` takes: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """The repository as the image store names it (Docker Hub's prefix dropped)."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    @property
    def local_tag(self) -> str | None:
        """``name:tag`` for the image store; None for a pull by digest alone."""
        if self.digest and not self.tag:
            return None
        return f"{self.name}:{self.tag or 'latest'}"

    @property
    def canonical(self) -> str:
        """The fully qualified name docker prints: ``docker.io/library/busybox:latest``."""
        text = f"{self.registry}/{self.repository}"
        if self.tag or not self.digest:
            text += f":{self.tag or 'latest'}"
        return text + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_remote(ref: str) -> RemoteReference:
    """Split a reference as docker does: the first component is a registry host when
    it holds a ``.`` or ``:`` or is ``localhost``; otherwise Docker Hub."""
    text = ref.strip() if isinstance(ref, str) else ""
    host, sep, rest = text.partition("/")
    if sep and ("." in host or ":" in host or host == "localhost"):
        registry = host
    else:
        registry, rest = DOCKER_HUB, text
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    match = _REMOTE.fullmatch(rest)
    if match is None or not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?", registry):
        raise InvalidArgument(
            f"invalid reference format {ref!r}: write [registry/]name[:tag|@sha256:digest] "
            "in lowercase, e.g. 127.0.0.1:5000/app:1"
        )
    repository = match.group("name")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return RemoteReference(registry, repository, match.group("tag"), match.group("digest"))


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _detail(body: bytes) -> str:
    """The error text of a registry (``{"errors": [{code, message}]}``) or token server
    (``{"details": ...}``) answer."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if not isinstance(parsed, dict):
        return ""
    errors = parsed.get("errors") or []
    if isinstance(errors, list) and errors:
        return "; ".join(
            f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ")
            for e in errors
            if isinstance(e, dict)
        )
    return str(parsed.get("details") or parsed.get("message") or parsed.get("error") or "")


def registry_error(
    status: int, body: bytes, what: str, *, logged_in: bool = False
) -> CargoholdError:
    """The registry's own error text as our error, with what to do about it."""
    detail = _detail(body)
    if not detail and status == 401:
        detail = "unauthorized: authentication required"
    message = f"{what}: {detail or http.client.responses.get(status, 'error')} (HTTP {status})"
    if status == 401:
        if logged_in:
            return Unauthorized(f"{message}; check the user name and password")
        return Unauthorized(message + "; log in with 'cargohold login REGISTRY'")
    if status == 403:
        return Unauthorized(message + "; the credentials do not allow this")
    if status == 404:
        return NotFound(message)
    if status >= 500:
        return Unavailable(message + "; the registry failed, try again later")
    return InvalidArgument(message)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never in a log line or a traceback's locals

    def basic(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> (``bearer``, {realm, service, ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class Response:
    """A response whose body is read (or streamed) by the caller; closes its connection's use."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers

    def read(self, n: int = -1) -> bytes:
        try:
            return self.raw.read(n) if n >= 0 else self.raw.read()
        except http.client.IncompleteRead as err:
            raise Unavailable(
                f"the registry closed the connection early: {len(err.partial)} more bytes "
                f"came, {err.expected} were missing (truncated blob)"
            ) from None
        except (OSError, http.client.HTTPException) as err:
            raise Unavailable(f"reading from the registry failed: {err}") from None

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""


class Registry:
    """One registry host. ``insecure`` names hosts allowed plain HTTP (loopback always is)."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None = None,
        *,
        insecure: Iterable[str] = (),
        cert_dirs: Iterable[Path] = (),
        timeout: float = _TIMEOUT,
    ) -> None:
        self.host = host
        self.endpoint = _HUB_ENDPOINT if host == DOCKER_HUB else host
        self.credentials = credentials
        self.insecure = host in set(insecure) or is_loopback(host)
        self.timeout = timeout
        self.scheme: str | None = None
        self._cert_dirs = [Path(d) for d in cert_dirs]
        self._verifying: ssl.SSLContext | None = None
        self._local = threading.local()
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._auth_scheme: str | None = None
        self._challenge: dict[str, str] = {}
        self._connections: list[http.client.HTTPConnection] = []

    def _secrets(self) -> list[str]:
        return [self.credentials.password] if self.credentials else []

    def _fail(self, message: str) -> str:
        return redact(message, self._secrets())

    @property
    def _context(self) -> ssl.SSLContext:
        """The verifying TLS context, built on first use (loading the CAs takes ~0.2 s)."""
        if self._verifying is None:
            self._verifying = self._ssl_context()
        return self._verifying

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        for base in self._cert_dirs:
            folder = base / self.endpoint
            for ca in sorted(folder.glob("*.crt")) if folder.is_dir() else ():
                context.load_verify_locations(cafile=str(ca))
        return context

    # -- connections -----------------------------------------------------------------

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and not fresh:
            return conn
        if conn is not None:
            conn.close()
        if self.scheme is None:
            self.scheme = self._probe_scheme()
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.endpoint, timeout=self.timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self.endpoint, timeout=self.timeout)
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _probe_scheme(self) -> str:
        """HTTPS, or HTTP for an insecure host that does not speak TLS at all."""
        context = self._context
        if self.insecure:
            # only "does it speak TLS?": the real connections verify the certificate
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(self.endpoint, timeout=self.timeout, context=context)
        try:
            conn.connect()
            return "https"
        except ssl.SSLCertVerificationError as err:
            raise self._untrusted(err) from None
        except (ssl.SSLError, ConnectionResetError) as err:
            if self.insecure:
                return "http"
            raise Unavailable(
                f"registry {self.host} does not speak TLS ({err}); if it is plain HTTP on "
                f"purpose, name it with --insecure-registry {self.host}"
            ) from None
        except OSError as err:
            raise Unavailable(f"cannot reach registry {self.host}: {err}") from None
        finally:
            conn.close()

    def _untrusted(self, err: ssl.SSLCertVerificationError) -> Unavailable:
        return Unavailable(
            f"registry {self.host}: its TLS certificate is not trusted ({err.verify_message}); "
            f"put the CA certificate in /etc/docker/certs.d/{self.endpoint}/ca.crt or "
            f"<state dir>/certs.d/{self.endpoint}/ca.crt"
        )

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        expect: Iterable[int] = (200,),
        what: str = "",
    ) -> Response:
        """Send one request (following auth challenges, and redirects for GET/HEAD).

        A status not in ``expect`` raises the registry's error, naming ``what``.
        The caller reads the body of what is returned.
        """
        expected = set(expect)
        target = path
        for attempt in range(6):
            response = self._send(method, target, scope, headers, body)
            if response.status == 401 and attempt == 0 and self._answer(response, scope):
                continue
            if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                location = response.header("Location")
                response.read()
                if not location:
                    break
                target = location  # blobs are often served from elsewhere
                continue
            if response.status not in expected:
                data = response.read()  # (also for HEAD: frees the connection)
                failure = registry_error(
                    response.status, data, what or path, logged_in=self.credentials is not None
                )
                raise type(failure)(self._fail(str(failure)))
            return response
        raise Unavailable(self._fail(f"{what or path}: too many redirects or auth rounds"))

    def _send(
        self,
        method: str,
        target: str,
        scope: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ) -> Response:
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        parsed = urllib.parse.urlsplit(target)
        foreign = bool(parsed.netloc) and parsed.netloc != self.endpoint
        if not foreign:
            auth = self._authorization(scope)
            if auth:
                all_headers["Authorization"] = auth
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        for retry in range(2):
            try:
                if foreign:  # a redirect to blob storage elsewhere: a one-off connection
                    conn_class = (
                        http.client.HTTPSConnection
                        if parsed.scheme == "https"
                        else http.client.HTTPConnection
                    )
                    conn = conn_class(parsed.netloc, timeout=self.timeout)
                    conn.request(method, target, body=body, headers=all_headers)
                else:
                    conn = self._connection(fresh=retry > 0)
                    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
                    conn.request(method, path or "/", body=body, headers=all_headers)
                return Response(conn.getresponse())
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if retry:  # a kept-alive connection the server had closed: once more, fresh
                    raise Unavailable(f"registry {self.host} closed the connection") from None
            except ssl.SSLCertVerificationError as err:
                raise self._untrusted(err) from None
            except ssl.SSLError as err:
                raise Unavailable(f"TLS with registry {self.host} failed: {err}") from None
            except (OSError, http.client.HTTPException) as err:
                raise Unavailable(self._fail(f"cannot reach registry {self.host}: {err}")) from None
        raise AssertionError("unreachable")

    def _authorization(self, scope: str) -> str:
        with self._lock:
            if self._auth_scheme == "bearer":
                token = self._tokens.get(scope)
                return f"Bearer {token}" if token else ""
        if self._auth_scheme == "basic" and self.credentials:
            return self.credentials.basic()
        return ""

    def _answer(self, response: Response, scope: str) -> bool:
        """Learn from a 401's challenge; True if a retry may now succeed."""
        response.read()
        scheme, params = _challenge(response.header("WWW-Authenticate"))
        if scheme == "basic":
            self._auth_scheme = "basic"
            return self.credentials is not None
        if scheme == "bearer" and params.get("realm"):
            self._auth_scheme = "bearer"
            self._challenge = params
            token = self._token(params, scope)
            with self._lock:
                self._tokens[scope] = token
            return True
        return False

    def _token(self, params: Mapping[str, str], scope: str) -> str:
        """A bearer token for ``scope`` from the challenge's token server."""
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scope.split()]  # a mount asks for two repositories
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme not in ("https", "http") or (realm.scheme == "http" and not self.insecure):
            raise Unavailable(
                f"registry {self.host} names a token server {realm.geturl()} that is not HTTPS"
            )
        conn_class = (
            http.client.HTTPSConnection if realm.scheme == "https" else http.client.HTTPConnection
        )
        kwargs: dict[str, Any] = {"context": self._context} if realm.scheme == "https" else {}
        conn = conn_class(realm.netloc, timeout=self.timeout, **kwargs)
        sep = "&" if realm.query else "?"
        path = f"{realm.path or '/'}{'?' + realm.query if realm.query else ''}"
        path += sep + urllib.parse.urlencode(query)
        headers = {"User-Agent": USER_AGENT}
        if self.credentials:
            headers["Authorization"] = self.credentials.basic()
        try:
            conn.request("GET", path, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
        except (OSError, http.client.HTTPException) as err:
            raise Unavailable(f"token server {realm.netloc} of {self.host}: {err}") from None
        finally:
            conn.close()
        if raw.status != 200:
            failure = registry_error(
                raw.status,
                data,
                f"token server of {self.host}",
                logged_in=self.credentials is not None,
            )
            raise type(failure)(self._fail(str(failure)))
        try:
            answer = json.loads(data)
            return str(answer.get("token") or answer["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise Unavailable(f"token server of {self.host} gave no token") from None

    # -- the API calls the rest uses ----------------------------------------------------------

    def check(self) -> None:
        """``GET /v2/``: reachable, speaking the API, and (with credentials) accepting them."""
        response = self.request("GET", "/v2/", what=f"registry {self.host}")
        response.read()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"
