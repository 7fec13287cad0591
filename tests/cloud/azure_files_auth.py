"""Request authentication for the test Azure Files server: SharedKey and SAS.

Written from the Storage REST reference ("Authorize with Shared Key", "Create a
service SAS", "Create an account SAS"), checked against what the official
`azure-storage-file-share` SDK signs. Quirks the SDK depends on:

- the SDK never signs the plain ``Range`` header (it uses ``x-ms-range``), so a
  request is accepted if it verifies with or without that header;
- a ``Content-Length`` of ``0`` is signed as an empty line;
- every ``x-ms-*`` header is signed, including ones that carry no meaning
  (the SDK sends a bare ``x-ms-meta``);
- with path-style URLs the canonical resource is ``/{account}`` followed by the
  raw request path, which itself starts with ``/{account}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

# Standard headers signed in this order, before the canonical x-ms-* headers.
_SIGNED_STANDARD = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


@dataclass(frozen=True)
class AuthError(Exception):
    """Why a request was refused; the server turns it into an XML error."""

    status: int
    code: str
    message: str


def sign(key_b64: str, text: str) -> str:
    """Base64 HMAC-SHA256 of ``text`` under the base64 account key."""
    digest = hmac.new(base64.b64decode(key_b64), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _char_rank(c: str) -> int:
    # The service sorts x-ms header names with a culture-aware comparison: '-' and
    # apostrophes are ignored at first, '_' sorts before digits, digits before letters.
    if c == "_":
        return 1
    if c.isdigit():
        return 10 + ord(c)
    if c.isalpha():
        return 1000 + ord(c.lower())
    return 2 + ord(c) % 8


def _header_sort_key(name: str) -> tuple[tuple[int, ...], str]:
    return tuple(_char_rank(c) for c in name if c not in "-'"), name


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The query as (raw name, unquoted value) pairs, in order."""
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def shared_key_string(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    account: str,
    *,
    sign_range: bool = True,
) -> str:
    """The string a SharedKey client signs for this request."""
    lines = [method]
    for name in _SIGNED_STANDARD:
        value = headers.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        if name == "range" and not sign_range:
            value = ""
        lines.append(value)
    text = "\n".join(lines) + "\n"
    ms = sorted(
        ((k, v) for k, v in headers.items() if k.startswith("x-ms-")),
        key=lambda kv: _header_sort_key(kv[0]),
    )
    text += "".join(f"{k}:{v}\n" for k, v in ms)
    text += f"/{account}{raw_path}"
    grouped: dict[str, list[str]] = {}
    for name, value in query:
        grouped.setdefault(name.lower(), []).append(value)
    for name in sorted(grouped):
        text += f"\n{name}:{','.join(sorted(grouped[name]))}"
    return text


def check_shared_key(
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    account: str,
    key_b64: str,
) -> None:
    """Raise `AuthError` unless the Authorization header is a valid SharedKey signature."""
    auth = headers.get("authorization", "")
    scheme, _, cred = auth.partition(" ")
    name, _, signature = cred.partition(":")
    if scheme != "SharedKey" or name != account or not signature:
        raise AuthError(403, "AuthenticationFailed", "Authorization header is malformed.")
    if "x-ms-date" not in headers and "date" not in headers:
        raise AuthError(403, "AuthenticationFailed", "Request date header not specified.")
    for sign_range in (True, False):
        text = shared_key_string(method, raw_path, query, headers, account, sign_range=sign_range)
        if hmac.compare_digest(sign(key_b64, text), signature):
            return
    raise AuthError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization "
        "header is formed correctly including the signature.",
    )


def _parse_time(value: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise AuthError(403, "AuthenticationFailed", f"Invalid SAS time {value!r}.")


def check_sas(
    query: Mapping[str, str],
    account: str,
    key_b64: str,
    share: str | None,
    path: str,
    permission: str,
) -> None:
    """Raise `AuthError` unless the SAS in ``query`` allows ``permission`` on the resource.

    ``share``/``path`` name the resource the request touches (path relative to the
    share, '' for the share itself); ``permission`` is one SAS letter (r, w, c, d, l).
    """

    def q(name: str) -> str:
        return query.get(name, "")

    now = datetime.now(UTC)
    if not q("se") or _parse_time(q("se")) < now:
        raise AuthError(403, "AuthenticationFailed", "Signed expiry time has passed.")
    if q("st") and _parse_time(q("st")) > now:
        raise AuthError(403, "AuthenticationFailed", "Signed start time is in the future.")
    if "ss" in query:  # account SAS
        text = "\n".join(
            [account, q("sp"), q("ss"), q("srt"), q("st"), q("se"), q("sip"), q("spr"), q("sv")]
        )
        text += "\n\n"  # an empty signed encryption scope, then the final newline
        if "f" not in q("ss"):
            raise AuthError(403, "AuthorizationServiceMismatch", "SAS does not cover files.")
        kind = "s" if share is None else ("c" if not path else "o")
        if kind not in q("srt"):
            raise AuthError(403, "AuthorizationResourceTypeMismatch", "SAS resource type.")
    else:  # service SAS on a share (sr=s) or one file (sr=f)
        resource = unquote(q("sr"))
        signed_path = share or ""
        if resource == "f":
            signed_path = f"{share}/{path}"
        elif resource != "s":
            raise AuthError(403, "AuthenticationFailed", "Unsupported signed resource.")
        fields = [q("sp"), q("st"), q("se"), f"/file/{account}/{signed_path}", q("si")]
        fields += [q("sip"), q("spr"), q("sv")]
        fields += [q(n) for n in ("rscc", "rscd", "rsce", "rscl", "rsct")]
        text = "\n".join(fields)
    if not hmac.compare_digest(sign(key_b64, text), q("sig")):
        raise AuthError(
            403, "AuthenticationFailed", "Signature did not match the signed SAS fields."
        )
    allowed = q("sp")
    if permission not in allowed and not (permission == "c" and "w" in allowed):
        raise AuthError(
            403, "AuthorizationPermissionMismatch", "SAS lacks the permission for this operation."
        )
