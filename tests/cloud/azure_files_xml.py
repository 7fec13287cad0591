"""Wire formats of the test Azure Files server: timestamps, ETags and XML bodies."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING
from urllib.parse import quote
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from .azure_files_store import Node, Share

XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>'
# Windows FILETIME of the Unix epoch, in 100 ns ticks: real ETags are FILETIMEs in hex.
_EPOCH_TICKS = 116444736000000000
_etag_lock = threading.Lock()
_last_tick = 0
_file_ids = itertools.count(13835128424026341376)


def new_etag() -> str:
    """A quoted ETag, strictly increasing so that two writes never share one."""
    global _last_tick
    with _etag_lock:
        _last_tick = max(_last_tick + 1, time.time_ns() // 100 + _EPOCH_TICKS)
        return f'"0x{_last_tick:X}"'


def new_file_id() -> str:
    return str(next(_file_ids))


def http_date(ts: float) -> str:
    """RFC 1123 date, as in Last-Modified and Date headers."""
    return formatdate(ts, usegmt=True)


def smb_time(ts: float) -> str:
    """The SMB property time format: ISO 8601 with seven fractional digits."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _text(name: str) -> str:
    # Names with characters XML 1.0 cannot carry are sent percent-encoded.
    if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF or ord(c) >= 0xFFFE for c in name):
        return f'<Name Encoded="true">{quote(name)}</Name>'
    return f"<Name>{escape(name)}</Name>"


def error_xml(code: str, message: str) -> bytes:
    return (
        f"{XML_HEAD}<Error><Code>{escape(code)}</Code><Message>{escape(message)}\n"
        f"Time:{smb_time(time.time())}</Message></Error>"
    ).encode()


def metadata_xml(metadata: dict[str, str]) -> str:
    return (
        "<Metadata>"
        + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in metadata.items())
        + ("</Metadata>")
    )


def share_list_xml(
    endpoint: str,
    shares: Iterable[Share],
    prefix: str,
    marker: str,
    max_results: int | None,
    next_marker: str,
    with_metadata: bool,
) -> bytes:
    parts = [f'{XML_HEAD}<EnumerationResults ServiceEndpoint="{escape(endpoint)}">']
    if prefix:
        parts.append(f"<Prefix>{escape(prefix)}</Prefix>")
    if marker:
        parts.append(f"<Marker>{escape(marker)}</Marker>")
    if max_results is not None:
        parts.append(f"<MaxResults>{max_results}</MaxResults>")
    parts.append("<Shares>")
    for share in shares:
        parts.append(
            f"<Share>{_text(share.name)}<Properties>"
            f"<Last-Modified>{http_date(share.last_modified)}</Last-Modified>"
            f"<Etag>{share.etag}</Etag><Quota>{share.quota}</Quota>"
            "<AccessTier>TransactionOptimized</AccessTier>"
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            "<EnabledProtocols>SMB</EnabledProtocols></Properties>"
        )
        if with_metadata:
            parts.append(metadata_xml(share.metadata))
        parts.append("</Share>")
    parts.append(f"</Shares><NextMarker>{escape(next_marker)}</NextMarker></EnumerationResults>")
    return "".join(parts).encode()


def _entry_xml(node: Node, include: set[str], extended: bool) -> str:
    tag = "Directory" if node.is_dir else "File"
    parts = [f"<{tag}>", _text(node.name)]
    if extended:
        parts.append(f"<FileId>{node.file_id}</FileId>")
    parts.append("<Properties>")
    if not node.is_dir:
        parts.append(f"<Content-Length>{node.size}</Content-Length>")
    if "timestamps" in include:
        parts.append(
            f"<CreationTime>{smb_time(node.creation_time)}</CreationTime>"
            f"<LastAccessTime>{smb_time(node.last_write_time)}</LastAccessTime>"
            f"<LastWriteTime>{smb_time(node.last_write_time)}</LastWriteTime>"
            f"<ChangeTime>{smb_time(node.change_time)}</ChangeTime>"
            f"<Last-Modified>{http_date(node.last_modified)}</Last-Modified>"
        )
    if "etag" in include:
        parts.append(f"<Etag>{node.etag}</Etag>")
    parts.append("</Properties>")
    if "attributes" in include:
        parts.append(f"<Attributes>{node.attributes_text()}</Attributes>")
    if "permissionkey" in include:
        parts.append(f"<PermissionKey>{node.permission_key}</PermissionKey>")
    parts.append(f"</{tag}>")
    return "".join(parts)


def entries_xml(
    endpoint: str,
    share: str,
    dir_path: str,
    dir_id: str,
    nodes: Iterable[Node],
    prefix: str,
    marker: str,
    max_results: int | None,
    next_marker: str,
    include: set[str],
    extended: bool,
) -> bytes:
    parts = [
        f'{XML_HEAD}<EnumerationResults ServiceEndpoint="{escape(endpoint)}" '
        f'ShareName="{escape(share)}" DirectoryPath="{escape(dir_path)}">'
    ]
    if prefix:
        parts.append(f"<Prefix>{escape(prefix)}</Prefix>")
    if marker:
        parts.append(f"<Marker>{escape(marker)}</Marker>")
    if max_results is not None:
        parts.append(f"<MaxResults>{max_results}</MaxResults>")
    if extended:
        parts.append(f"<DirectoryId>{dir_id}</DirectoryId>")
    parts.append("<Entries>")
    parts.extend(_entry_xml(node, include, extended) for node in nodes)
    parts.append(f"</Entries><NextMarker>{escape(next_marker)}</NextMarker></EnumerationResults>")
    return "".join(parts).encode()


def ranges_xml(ranges: Iterable[tuple[int, int]], next_marker: str = "") -> bytes:
    """``Ranges`` of written bytes, ends inclusive as on the wire."""
    body = "".join(f"<Range><Start>{s}</Start><End>{e - 1}</End></Range>" for s, e in ranges)
    if next_marker:
        body += f"<NextMarker>{next_marker}</NextMarker>"
    return f"{XML_HEAD}<Ranges>{body}</Ranges>".encode()


def share_stats_xml(used: int) -> bytes:
    return f"{XML_HEAD}<ShareStats><ShareUsageBytes>{used}</ShareUsageBytes></ShareStats>".encode()
