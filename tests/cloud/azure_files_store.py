"""In-memory state of the test Azure Files server: shares, directories, files, leases.

Names are case-insensitive and case-preserving, as on the real service (SMB
semantics). File contents are bytearrays written in place, so a 256 MB file is
built from 4 MiB ranges without ever being copied whole.
"""

from __future__ import annotations

import bisect
import time
import uuid
from dataclasses import dataclass, field

from .azure_files_xml import new_etag, new_file_id

MAX_RANGE = 4 * 1024 * 1024
MAX_FILE = 4 * 1024**4


class ApiError(Exception):
    """An error response: status, the service's error code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str = "The specified resource does not exist.") -> ApiError:
    return ApiError(404, "ResourceNotFound", what)


class RangeSet:
    """Sorted, disjoint, half-open [start, end) intervals of written bytes."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        self.remove(start, end)
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        # merge with touching neighbours so sequential uploads stay one range
        if i + 1 < len(self.starts) and self.starts[i + 1] == end:
            self.ends[i] = self.ends.pop(i + 1)
            self.starts.pop(i + 1)
        if i > 0 and self.ends[i - 1] == start:
            self.ends[i - 1] = self.ends.pop(i)
            self.starts.pop(i)

    def remove(self, start: int, end: int) -> None:
        kept_s: list[int] = []
        kept_e: list[int] = []
        lo = max(0, bisect.bisect_right(self.ends, start) - 1)
        hi = bisect.bisect_left(self.starts, end)
        for s, e in zip(self.starts[lo:hi], self.ends[lo:hi], strict=True):
            if e <= start or s >= end:
                kept_s.append(s)
                kept_e.append(e)
                continue
            if s < start:
                kept_s.append(s)
                kept_e.append(start)
            if e > end:
                kept_s.append(end)
                kept_e.append(e)
        self.starts[lo:hi] = kept_s
        self.ends[lo:hi] = kept_e

    def within(self, start: int, end: int) -> list[tuple[int, int]]:
        return [
            (max(s, start), min(e, end))
            for s, e in zip(self.starts, self.ends, strict=True)
            if e > start and s < end
        ]


@dataclass(eq=False)
class Node:
    name: str
    parent: Dir | None
    is_dir: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    etag: str = field(default_factory=new_etag)
    file_id: str = field(default_factory=new_file_id)
    last_modified: float = field(default_factory=time.time)
    creation_time: float = field(default_factory=time.time)
    last_write_time: float = field(default_factory=time.time)
    change_time: float = field(default_factory=time.time)
    attributes: str = ""
    permission_key: str = "4066528134148476695*1"

    @property
    def size(self) -> int:
        return 0

    def touch(self, *, content: bool = True) -> None:
        """A write: new ETag and Last-Modified (and SMB times for content changes)."""
        now = time.time()
        self.etag = new_etag()
        self.last_modified = now
        self.change_time = now
        if content:
            self.last_write_time = now

    def attributes_text(self) -> str:
        if self.attributes and self.attributes.lower() not in ("none", "preserve"):
            return self.attributes
        return "Directory" if self.is_dir else "Archive"

    def path(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/".join(reversed(parts))


@dataclass(eq=False)
class Dir(Node):
    is_dir: bool = True
    children: dict[str, Node] = field(default_factory=dict)

    def get(self, name: str) -> Node | None:
        return self.children.get(name.casefold())

    def put(self, node: Node) -> None:
        node.parent = self
        self.children[node.name.casefold()] = node

    def sorted_children(self) -> list[Node]:
        return sorted(self.children.values(), key=lambda n: n.name)


@dataclass(eq=False)
class File(Node):
    data: bytearray = field(default_factory=bytearray)
    written: RangeSet = field(default_factory=RangeSet)
    content: dict[str, str] = field(default_factory=dict)  # content-type etc.
    lease_id: str | None = None
    lease_state: str = "available"  # available | leased | broken

    @property
    def size(self) -> int:
        return len(self.data)

    def resize(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
            self.written.remove(size, MAX_FILE)
        else:
            self.data.extend(bytes(size - len(self.data)))

    def check_lease(self, lease_id: str | None) -> None:
        """Refuse a write that does not carry this file's active lease, as the service does."""
        if self.lease_state == "leased":
            if not lease_id:
                raise ApiError(
                    412,
                    "LeaseIdMissing",
                    "There is currently a lease on the file and no lease ID was specified "
                    "in the request.",
                )
            if lease_id != self.lease_id:
                raise ApiError(
                    412,
                    "LeaseIdMismatchWithFileOperation",
                    "The lease ID specified did not match the lease ID for the file.",
                )
        elif lease_id:
            raise ApiError(
                412,
                "LeaseNotPresentWithFileOperation",
                "There is currently no lease on the file.",
            )

    def lease(self, action: str, lease_id: str | None, proposed: str | None, duration: str) -> str:
        """Apply a lease action; returns the lease id to report."""
        if action == "acquire":
            if duration not in ("-1", ""):
                raise ApiError(
                    400, "InvalidHeaderValue", "File leases must have an infinite duration (-1)."
                )
            if self.lease_state == "leased" and proposed != self.lease_id:
                raise ApiError(409, "LeaseAlreadyPresent", "There is already a lease present.")
            self.lease_id = proposed or str(uuid.uuid4())
            self.lease_state = "leased"
            return self.lease_id
        if action == "break":
            if self.lease_state == "available":
                raise ApiError(409, "LeaseNotPresentWithLeaseOperation", "There is no lease.")
            self.lease_state = "broken"
            self.lease_id = None
            return ""
        if self.lease_state != "leased":
            raise ApiError(409, "LeaseNotPresentWithLeaseOperation", "There is no lease.")
        if lease_id != self.lease_id:
            raise ApiError(
                409,
                "LeaseIdMismatchWithLeaseOperation",
                "The lease ID specified did not match the lease ID for the file.",
            )
        if action == "release":
            self.lease_id = None
            self.lease_state = "available"
            return lease_id or ""
        if action == "change":
            if not proposed:
                raise ApiError(400, "MissingRequiredHeader", "x-ms-proposed-lease-id missing.")
            self.lease_id = proposed
            return proposed
        raise ApiError(400, "InvalidHeaderValue", f"Unknown lease action {action!r}.")


@dataclass(eq=False)
class Share:
    name: str
    quota: int = 5120
    metadata: dict[str, str] = field(default_factory=dict)
    etag: str = field(default_factory=new_etag)
    last_modified: float = field(default_factory=time.time)
    root: Dir = field(default_factory=lambda: Dir(name="", parent=None))

    def touch(self) -> None:
        self.etag = new_etag()
        self.last_modified = time.time()

    def used_bytes(self) -> int:
        total = 0
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Dir):
                stack.extend(node.children.values())
            else:
                total += node.size
        return total

    def lookup(self, parts: list[str]) -> Node:
        """The node at ``parts``; 404 ParentNotFound/ResourceNotFound as the service says."""
        node: Node = self.root
        for i, part in enumerate(parts):
            child = node.get(part) if isinstance(node, Dir) else None
            if child is None:
                if i < len(parts) - 1:
                    raise ApiError(
                        404, "ParentNotFound", "The specified parent path does not exist."
                    )
                raise not_found()
            node = child
        return node

    def parent_of(self, parts: list[str]) -> Dir:
        try:
            parent = self.lookup(parts[:-1]) if len(parts) > 1 else self.root
        except ApiError:
            parent = None
        if not isinstance(parent, Dir):
            raise ApiError(404, "ParentNotFound", "The specified parent path does not exist.")
        return parent
