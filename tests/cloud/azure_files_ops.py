"""The operations of the test Azure Files server, one function per REST operation.

Each takes the parsed `Request` and the `FileService` (whose lock the caller
holds) and returns a `Response` or raises `ApiError`. Status codes, error codes
and headers follow the File service REST reference.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from . import azure_files_xml as xml
from .azure_files_store import MAX_FILE, MAX_RANGE, ApiError, Dir, File, Node, Share, not_found

if TYPE_CHECKING:
    from .azure_files_server import FileService

DEFAULT_PAGE = 5000
# (request header, the response header it sets) for a file's HTTP properties
_CONTENT_HEADERS = (
    ("x-ms-content-type", "Content-Type"),
    ("x-ms-content-encoding", "Content-Encoding"),
    ("x-ms-content-language", "Content-Language"),
    ("x-ms-cache-control", "Cache-Control"),
    ("x-ms-content-disposition", "Content-Disposition"),
    ("x-ms-content-md5", "Content-MD5"),
)
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Request:
    method: str
    raw_path: str
    parts: list[str]  # unquoted path segments after the account: [share, dir, ..., name]
    query: dict[str, str]
    headers: dict[str, str]  # lowercased names
    metadata: dict[str, str]  # x-ms-meta-* with the client's spelling of the keys
    body: bytes
    endpoint: str

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


# --- helpers -----------------------------------------------------------------------------


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, "InvalidHeaderValue", f"{name} is not an integer.") from None


def _range(req: Request) -> tuple[int, int | None] | None:
    """(start, inclusive end or None) from x-ms-range or Range."""
    raw = req.header("x-ms-range") or req.header("range")
    if not raw:
        return None
    m = _RANGE.match(raw.strip())
    if not m:
        raise ApiError(400, "InvalidHeaderValue", f"Invalid range {raw!r}.")
    start, end = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
    if end is not None and end < start:
        raise ApiError(416, "InvalidRange", "The range specified is invalid.")
    return start, end


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _parse_smb_time(value: str) -> float | None:
    if value.lower() in ("", "now", "preserve"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", value)
    if not m:
        raise ApiError(400, "InvalidHeaderValue", f"Invalid file time {value!r}.")
    dt = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return dt.timestamp() + float("0." + (m.group(2) or "0"))


def _apply_smb(node: Node, req: Request) -> None:
    """SMB properties from x-ms-file-* headers ('preserve' and 'now' leave them alone)."""
    attrs = req.header("x-ms-file-attributes")
    if attrs and attrs.lower() != "preserve":
        node.attributes = attrs
    for header, attr in (
        ("x-ms-file-creation-time", "creation_time"),
        ("x-ms-file-last-write-time", "last_write_time"),
        ("x-ms-file-change-time", "change_time"),
    ):
        ts = _parse_smb_time(req.header(header))
        if ts is not None:
            setattr(node, attr, ts)


def _node_headers(node: Node) -> dict[str, str]:
    parent_id = node.parent.file_id if node.parent is not None else "0"
    return {
        "ETag": node.etag,
        "Last-Modified": xml.http_date(node.last_modified),
        "x-ms-file-creation-time": xml.smb_time(node.creation_time),
        "x-ms-file-last-write-time": xml.smb_time(node.last_write_time),
        "x-ms-file-change-time": xml.smb_time(node.change_time),
        "x-ms-file-attributes": node.attributes_text(),
        "x-ms-file-permission-key": node.permission_key,
        "x-ms-file-id": node.file_id,
        "x-ms-file-parent-id": parent_id,
    }


def _meta_headers(metadata: dict[str, str]) -> dict[str, str]:
    return {f"x-ms-meta-{k}": v for k, v in metadata.items()}


def _check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    for key in metadata:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ApiError(400, "InvalidMetadata", f"Metadata name {key!r} is not valid.")
    return dict(metadata)


def _share(req: Request, svc: FileService) -> Share:
    return svc.share(req.parts[0])


def _node(req: Request, svc: FileService) -> Node:
    return _share(req, svc).lookup(req.parts[1:])


def _file(req: Request, svc: FileService) -> File:
    node = _node(req, svc)
    if not isinstance(node, File):
        raise not_found()
    return node


def _dir(req: Request, svc: FileService) -> Dir:
    node = _node(req, svc)
    if not isinstance(node, Dir):
        raise not_found()
    return node


def _page(
    items: list[tuple[str, object]], req: Request
) -> tuple[list[object], str, str, int | None]:
    """Apply prefix/marker/maxresults to (sort key, item) pairs; items, marker, next, max."""
    prefix = req.query.get("prefix", "")
    marker = req.query.get("marker", "")
    raw_max = req.query.get("maxresults")
    max_results = _int(raw_max, "maxresults") if raw_max else None
    if max_results is not None and max_results < 1:
        raise ApiError(400, "OutOfRangeQueryParameterValue", "maxresults must be positive.")
    limit = max_results or DEFAULT_PAGE
    chosen = [
        (k, v)
        for k, v in items
        if k.startswith(prefix.casefold()) and (not marker or k >= marker.casefold())
    ]
    page = chosen[:limit]
    next_marker = chosen[limit][0] if len(chosen) > limit else ""
    return [v for _, v in page], marker, next_marker, max_results


# --- service and shares ------------------------------------------------------------------


def list_shares(req: Request, svc: FileService) -> Response:
    items = sorted(((s.name.casefold(), s) for s in svc.shares.values()), key=lambda kv: kv[0])
    page, marker, next_marker, max_results = _page(list(items), req)
    include = {p.strip().lower() for p in req.query.get("include", "").split(",")}
    body = xml.share_list_xml(
        req.endpoint,
        page,  # type: ignore[arg-type]
        req.query.get("prefix", ""),
        marker,
        max_results,
        next_marker,
        "metadata" in include,
    )
    return Response(200, {"Content-Type": "application/xml"}, body)


def _share_headers(share: Share) -> dict[str, str]:
    return {"ETag": share.etag, "Last-Modified": xml.http_date(share.last_modified)}


def create_share(req: Request, svc: FileService) -> Response:
    name = req.parts[0]
    if not re.match(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$", name):
        raise ApiError(400, "InvalidResourceName", "The specified resource name is not valid.")
    if name in svc.shares:
        raise ApiError(409, "ShareAlreadyExists", "The specified share already exists.")
    share = Share(name=name, metadata=_check_metadata(req.metadata))
    if req.header("x-ms-share-quota"):
        share.quota = _int(req.header("x-ms-share-quota"), "x-ms-share-quota")
    svc.shares[name] = share
    return Response(201, _share_headers(share))


def delete_share(req: Request, svc: FileService) -> Response:
    _share(req, svc)
    del svc.shares[req.parts[0]]
    return Response(202)


def share_properties(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    headers = _share_headers(share) | _meta_headers(share.metadata)
    headers |= {
        "x-ms-share-quota": str(share.quota),
        "x-ms-access-tier": "TransactionOptimized",
        "x-ms-enabled-protocols": "SMB",
        "x-ms-lease-status": "unlocked",
        "x-ms-lease-state": "available",
    }
    return Response(200, headers)


def set_share_metadata(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    share.metadata = _check_metadata(req.metadata)
    share.touch()
    return Response(200, _share_headers(share))


def set_share_properties(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    if req.header("x-ms-share-quota"):
        share.quota = _int(req.header("x-ms-share-quota"), "x-ms-share-quota")
    share.touch()
    return Response(200, _share_headers(share))


def share_stats(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    body = xml.share_stats_xml(share.used_bytes())
    return Response(200, _share_headers(share) | {"Content-Type": "application/xml"}, body)


def get_share_acl(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    body = f"{xml.XML_HEAD}<SignedIdentifiers />".encode()
    return Response(200, _share_headers(share) | {"Content-Type": "application/xml"}, body)


def set_share_acl(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    share.touch()
    return Response(200, _share_headers(share))


# --- directories -------------------------------------------------------------------------


def create_directory(req: Request, svc: FileService) -> Response:
    share = _share(req, svc)
    if len(req.parts) < 2:
        raise ApiError(409, "ResourceAlreadyExists", "The root directory always exists.")
    parent = share.parent_of(req.parts[1:])
    if parent.get(req.parts[-1]) is not None:
        raise ApiError(409, "ResourceAlreadyExists", "The specified resource already exists.")
    node = Dir(name=req.parts[-1], parent=parent, metadata=_check_metadata(req.metadata))
    _apply_smb(node, req)
    parent.put(node)
    return Response(201, _node_headers(node) | {"x-ms-request-server-encrypted": "true"})


def delete_directory(req: Request, svc: FileService) -> Response:
    node = _dir(req, svc)
    if node.parent is None:
        raise ApiError(400, "InvalidResourceName", "The root directory cannot be deleted.")
    if node.children:
        raise ApiError(409, "DirectoryNotEmpty", "The specified directory is not empty.")
    del node.parent.children[node.name.casefold()]
    return Response(202)


def directory_properties(req: Request, svc: FileService) -> Response:
    node = _dir(req, svc)
    headers = _node_headers(node) | _meta_headers(node.metadata)
    return Response(200, headers | {"x-ms-server-encrypted": "true"})


def set_directory_metadata(req: Request, svc: FileService) -> Response:
    node = _dir(req, svc)
    node.metadata = _check_metadata(req.metadata)
    node.touch(content=False)
    return Response(200, {"ETag": node.etag, "x-ms-request-server-encrypted": "true"})


def set_directory_properties(req: Request, svc: FileService) -> Response:
    node = _dir(req, svc)
    node.touch(content=False)
    _apply_smb(node, req)
    return Response(200, _node_headers(node) | {"x-ms-request-server-encrypted": "true"})


def list_directory(req: Request, svc: FileService) -> Response:
    node = _dir(req, svc)
    include = {p.strip().lower() for p in req.query.get("include", "").split(",") if p.strip()}
    extended = req.header("x-ms-file-extended-info").lower() == "true" or bool(include)
    items: list[tuple[str, object]] = [(c.name.casefold(), c) for c in node.children.values()]
    items.sort(key=lambda kv: kv[0])
    page, marker, next_marker, max_results = _page(items, req)
    body = xml.entries_xml(
        req.endpoint,
        req.parts[0],
        "/".join(req.parts[1:]),
        node.file_id,
        page,  # type: ignore[arg-type]
        req.query.get("prefix", ""),
        marker,
        max_results,
        next_marker,
        include,
        extended,
    )
    return Response(200, {"Content-Type": "application/xml"}, body)


# --- files -------------------------------------------------------------------------------


def _file_headers(node: File) -> dict[str, str]:
    headers = _node_headers(node) | _meta_headers(node.metadata)
    headers |= {"Content-Type": "application/octet-stream"} | node.content
    headers |= {
        "x-ms-type": "File",
        "x-ms-server-encrypted": "true",
        "Accept-Ranges": "bytes",
        "x-ms-lease-state": node.lease_state,
        "x-ms-lease-status": "locked" if node.lease_state == "leased" else "unlocked",
    }
    if node.lease_state == "leased":
        headers["x-ms-lease-duration"] = "infinite"
    return headers


def _set_content_headers(node: File, req: Request, *, replace: bool) -> None:
    given = {resp: req.headers[h] for h, resp in _CONTENT_HEADERS if h in req.headers}
    if replace or given:
        node.content = given


def create_file(req: Request, svc: FileService) -> Response:
    if req.header("x-ms-type").lower() != "file":
        raise ApiError(400, "MissingRequiredHeader", "x-ms-type: file is required.")
    size = _int(req.header("x-ms-content-length", "0"), "x-ms-content-length")
    if not 0 <= size <= MAX_FILE:
        raise ApiError(400, "OutOfRangeInput", "x-ms-content-length is out of range.")
    share = _share(req, svc)
    parent = share.parent_of(req.parts[1:])
    existing = parent.get(req.parts[-1])
    if isinstance(existing, Dir):
        raise ApiError(409, "ResourceTypeMismatch", "A directory of that name exists.")
    if isinstance(existing, File):
        existing.check_lease(req.header("x-ms-lease-id") or None)
        node = existing
        node.name = req.parts[-1]
    else:
        node = File(name=req.parts[-1], parent=parent)
        parent.put(node)
    node.data = bytearray(size)
    node.written.remove(0, MAX_FILE)
    node.metadata = _check_metadata(req.metadata)
    _set_content_headers(node, req, replace=True)
    node.touch()
    _apply_smb(node, req)
    return Response(201, _node_headers(node) | {"x-ms-request-server-encrypted": "true"})


def delete_file(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    node.check_lease(req.header("x-ms-lease-id") or None)
    assert node.parent is not None
    del node.parent.children[node.name.casefold()]
    return Response(202)


def file_properties(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    _check_read_lease(node, req)
    return Response(200, _file_headers(node) | {"Content-Length": str(node.size)})


def _check_read_lease(node: File, req: Request) -> None:
    given = req.header("x-ms-lease-id")
    if given and given != node.lease_id:
        raise ApiError(
            412, "LeaseIdMismatchWithFileOperation", "The lease ID specified did not match."
        )


def get_file(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    _check_read_lease(node, req)
    headers = _file_headers(node)
    size = node.size
    rng = _range(req)
    if rng is None:
        return Response(200, headers, bytes(node.data))
    start, end = rng
    if start >= size:
        raise ApiError(416, "InvalidRange", "The range specified is invalid for the current size.")
    end = size - 1 if end is None else min(end, size - 1)
    body = bytes(node.data[start : end + 1])  # a copy: later writes must not change it
    if "Content-MD5" in headers:
        headers["x-ms-content-md5"] = headers.pop("Content-MD5")
    if req.header("x-ms-range-get-content-md5").lower() == "true":
        if len(body) > MAX_RANGE:
            raise ApiError(400, "OutOfRangeInput", "MD5 is only given for ranges up to 4 MiB.")
        headers["Content-MD5"] = _md5(body)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(206, headers, body)


def put_range(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    rng = _range(req)
    if rng is None or rng[1] is None:
        raise ApiError(400, "MissingRequiredHeader", "x-ms-range with an end is required.")
    start, end = rng[0], rng[1]
    length = end - start + 1
    write = req.header("x-ms-write").lower()
    if write not in ("update", "clear"):
        raise ApiError(400, "InvalidHeaderValue", "x-ms-write must be update or clear.")
    if write == "update":
        if length > MAX_RANGE:
            raise ApiError(413, "RequestBodyTooLarge", "A range may be at most 4 MiB.")
        if len(req.body) != length:
            raise ApiError(400, "InvalidHeaderValue", "The body length does not match the range.")
        if req.header("content-md5") and req.header("content-md5") != _md5(req.body):
            raise ApiError(400, "Md5Mismatch", "The MD5 value specified does not match.")
    elif req.body:
        raise ApiError(400, "InvalidHeaderValue", "A clear carries no body.")
    if end >= node.size:
        raise ApiError(416, "InvalidRange", "The range extends beyond the end of the file.")
    node.check_lease(req.header("x-ms-lease-id") or None)
    headers = {"x-ms-request-server-encrypted": "true"}
    if write == "update":
        node.data[start : end + 1] = req.body
        node.written.add(start, end + 1)
        headers["Content-MD5"] = _md5(req.body)
    else:
        node.data[start : end + 1] = bytes(length)
        node.written.remove(start, end + 1)
    node.touch()
    headers |= {"ETag": node.etag, "Last-Modified": xml.http_date(node.last_modified)}
    return Response(201, headers)


def range_list(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    rng = _range(req)
    start, end = (0, node.size) if rng is None else (rng[0], (rng[1] or node.size - 1) + 1)
    headers = {
        "ETag": node.etag,
        "Last-Modified": xml.http_date(node.last_modified),
        "x-ms-content-length": str(node.size),
        "Content-Type": "application/xml",
    }
    ranges = node.written.within(start, end)
    marker = req.query.get("marker", "")
    if marker:  # list_ranges pages: the marker is the start offset of the next range
        ranges = [r for r in ranges if r[0] >= _int(marker, "marker")]
    next_marker = ""
    if req.query.get("maxresults"):
        limit = max(1, _int(req.query["maxresults"], "maxresults"))
        if len(ranges) > limit:
            next_marker = str(ranges[limit][0])
        ranges = ranges[:limit]
    return Response(200, headers, xml.ranges_xml(ranges, next_marker))


def set_file_properties(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    node.check_lease(req.header("x-ms-lease-id") or None)
    if req.header("x-ms-content-length"):
        size = _int(req.header("x-ms-content-length"), "x-ms-content-length")
        if not 0 <= size <= MAX_FILE:
            raise ApiError(400, "OutOfRangeInput", "x-ms-content-length is out of range.")
        node.resize(size)
    _set_content_headers(node, req, replace=False)
    node.touch(content=bool(req.header("x-ms-content-length")))
    _apply_smb(node, req)
    return Response(200, _node_headers(node) | {"x-ms-request-server-encrypted": "true"})


def set_file_metadata(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    node.check_lease(req.header("x-ms-lease-id") or None)
    node.metadata = _check_metadata(req.metadata)
    node.touch(content=False)
    return Response(200, {"ETag": node.etag, "x-ms-request-server-encrypted": "true"})


def lease_file(req: Request, svc: FileService) -> Response:
    node = _file(req, svc)
    action = req.header("x-ms-lease-action").lower()
    lease_id = node.lease(
        action,
        req.header("x-ms-lease-id") or None,
        req.header("x-ms-proposed-lease-id") or None,
        req.header("x-ms-lease-duration"),
    )
    headers = {"ETag": node.etag, "Last-Modified": xml.http_date(node.last_modified)}
    if action == "break":
        return Response(202, headers | {"x-ms-lease-time": "0"})
    headers["x-ms-lease-id"] = lease_id
    return Response(201 if action == "acquire" else 200, headers)


def rename(req: Request, svc: FileService) -> Response:
    """Rename a file or directory within its share (x-ms-file-rename-source names it)."""
    share = _share(req, svc)
    source = req.header("x-ms-file-rename-source")
    if not source:
        raise ApiError(400, "MissingRequiredHeader", "x-ms-file-rename-source is required.")
    # decoded before splitting: clients encode the slashes of the path as %2F
    segments = [p for p in unquote(urlsplit(source).path).split("/") if p]
    if segments[:1] == [svc.account]:
        segments = segments[1:]
    if not segments or segments[0] != share.name or len(segments) < 2 or len(req.parts) < 2:
        raise ApiError(400, "InvalidHeaderValue", "The rename source must be in the same share.")
    node = share.lookup(segments[1:])
    want_dir = req.query.get("restype") == "directory"
    if node.is_dir != want_dir:
        raise ApiError(409, "ResourceTypeMismatch", "The source is of the other resource type.")
    if isinstance(node, File):
        node.check_lease(req.header("x-ms-source-lease-id") or None)
    dest_parent = share.parent_of(req.parts[1:])
    ancestor: Node | None = dest_parent
    while ancestor is not None:
        if ancestor is node:
            raise ApiError(400, "InvalidResourceName", "A directory cannot move into itself.")
        ancestor = ancestor.parent
    existing = dest_parent.get(req.parts[-1])
    if existing is not None and existing is not node:
        if req.header("x-ms-file-rename-replace-if-exists").lower() != "true":
            raise ApiError(409, "ResourceAlreadyExists", "The destination already exists.")
        if isinstance(existing, Dir) or node.is_dir:
            raise ApiError(409, "ResourceTypeMismatch", "Only a file may replace a file.")
        assert isinstance(existing, File)
        existing.check_lease(req.header("x-ms-destination-lease-id") or None)
    assert node.parent is not None
    del node.parent.children[node.name.casefold()]
    node.name = req.parts[-1]
    if req.metadata:  # Rename File may set new metadata; without any, the source's stays
        node.metadata = _check_metadata(req.metadata)
    dest_parent.put(node)
    node.touch(content=False)
    return Response(200, _node_headers(node) | {"x-ms-request-server-encrypted": "true"})
