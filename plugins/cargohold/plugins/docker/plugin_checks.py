"""The protocol conformance suite behind ``cargohold plugin check``.

Each check sends what a real engine sends (or, for the malformed-request
check, what a broken client might) and records every exchange as evidence.
The suite creates volumes with a unique prefix and removes them at the end,
whatever happened. What it checks, and why, is in docs/docker-plugin-client.md.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import CargoholdError
from cargohold.core.kernel.mounts import is_mountpoint
from cargohold.plugins.docker.client import Answer, PluginClient
from cargohold.plugins.docker.discovery import PluginAddress

# RFC 3339 date-time: the zone (Z or +hh:mm) is what the engine insists on.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_SHOWN = 400


@dataclass
class Exchange:
    """One request and its answer, as shown in the report."""

    method: str
    request: str
    status: int | None
    answer: str


@dataclass
class CheckResult:
    """One check's verdict. ``warning``: it passed, but found something a plugin
    should fix that the Docker engine itself never makes happen (the summary says so)."""

    name: str
    passed: bool
    summary: str
    evidence: list[Exchange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warning: bool = False

    @property
    def verdict(self) -> str:
        return "FAIL" if not self.passed else "WARN" if self.warning else "PASS"


@dataclass
class Report:
    plugin: str
    address: str
    checks: list[CheckResult]
    cleanup: list[str]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def counts(self) -> tuple[int, int, int]:
        """(passed without warning, warnings, failed)."""
        warned = sum(c.passed and c.warning for c in self.checks)
        passed = sum(c.passed for c in self.checks) - warned
        return passed, warned, len(self.checks) - passed - warned

    def to_json(self) -> dict[str, Any]:
        passed, warned, failed = self.counts()
        return {
            "plugin": self.plugin,
            "address": self.address,
            "passed": self.passed,
            "counts": {"passed": passed, "warnings": warned, "failed": failed},
            "checks": [asdict(c) for c in self.checks],
            "cleanup": self.cleanup,
        }


class _Failed(Exception):
    """A check's verdict: failed, with this summary."""


class _Warning(Exception):
    """A check's verdict: passed with a warning, with this summary."""


@dataclass
class _Reply:
    status: int | None
    data: Any
    answer: Answer | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.data, dict) and not self.data.get("Err")

    @property
    def err(self) -> str:
        if isinstance(self.data, dict) and self.data.get("Err"):
            return str(self.data["Err"])
        if self.data is not None:
            return f"HTTP {self.status}: {self.data!r}"
        return self.described()

    def described(self) -> str:
        """What came back when it was not JSON: the content type and the first line."""
        if self.answer is None or not self.answer.body.strip():
            return f"HTTP {self.status} with an empty body"
        first = self.answer.text(_SHOWN).splitlines()[0]
        kind = self.answer.content_type or "no content type"
        return f"HTTP {self.status} with a non-JSON body ({kind}): {first}"


class Conformance:
    """Runs the checks against one plugin through ``client``."""

    def __init__(self, client: PluginClient, opts: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.opts = dict(opts or {})
        self.prefix = f"chk-{secrets.token_hex(4)}"
        self.volume = f"{self.prefix}-vol"
        self._created: list[str] = [self.volume]
        self._mounted: dict[tuple[str, str], int] = {}
        self._evidence: list[Exchange] = []
        self._notes: list[str] = []

    # -- talking -----------------------------------------------------------

    def send(self, method: str, payload: Any = None, *, raw: bytes | None = None) -> _Reply:
        """Send ``payload`` as the engine would (or ``raw`` bytes) and record the exchange."""
        if raw is not None:
            body = raw
        elif payload is None:
            body = b""
        else:
            body = json.dumps(payload).encode() + b"\n"
        shown = body.decode("utf-8", "replace").strip()
        try:
            answer = self.client.post(method, body)
        except CargoholdError as err:
            self._evidence.append(Exchange(method, shown, None, f"no answer: {err}"))
            raise _Failed(f"{method}: no answer: {err}") from None
        self._evidence.append(Exchange(method, shown, answer.status, answer.text(_SHOWN)))
        self._track(method, payload, answer.status, answer.json())
        return _Reply(answer.status, answer.json() if answer.body else None, answer)

    def _track(self, method: str, payload: Any, status: int, data: Any) -> None:
        """Remember mounts and volumes made, so cleanup can undo them."""
        ok = status == 200 and isinstance(data, dict) and not data.get("Err")
        if not ok or not isinstance(payload, dict):
            return
        key = (str(payload.get("Name")), str(payload.get("ID")))
        if method == "VolumeDriver.Mount":
            self._mounted[key] = self._mounted.get(key, 0) + 1
        elif method == "VolumeDriver.Unmount" and self._mounted.get(key):
            self._mounted[key] -= 1

    def note(self, text: str) -> None:
        self._notes.append(text)

    def mount(self, mount_id: str) -> str:
        reply = self.send("VolumeDriver.Mount", {"Name": self.volume, "ID": mount_id})
        if not reply.ok:
            raise _Failed(f"Mount with id {mount_id[:12]} was refused: {reply.err}")
        mountpoint = reply.data.get("Mountpoint")
        if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
            raise _Failed(f"Mount answered no absolute Mountpoint: {mountpoint!r}")
        return mountpoint

    def unmount(self, mount_id: str, what: str = "Unmount") -> None:
        reply = self.send("VolumeDriver.Unmount", {"Name": self.volume, "ID": mount_id})
        if not reply.ok:
            raise _Failed(f"{what} with id {mount_id[:12]} was refused: {reply.err}")

    def get(self, name: str) -> _Reply:
        return self.send("VolumeDriver.Get", {"Name": name})

    def listed(self) -> list[dict[str, Any]]:
        reply = self.send("VolumeDriver.List", {})
        if not reply.ok:
            raise _Failed(f"List failed: {reply.err}")
        volumes = reply.data.get("Volumes") or []
        if not isinstance(volumes, list):
            raise _Failed(f"List answered Volumes={volumes!r}, not a list")
        return [v for v in volumes if isinstance(v, dict)]

    # -- running -----------------------------------------------------------

    def run(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        for name, check, requires in self._checks():
            if requires and not _passed(results, requires):
                reason = f"not run: check {requires} did not pass"
                results.append(CheckResult(name, False, reason))
                continue
            results.append(self._run_one(name, check))
        return results

    def _run_one(self, name: str, check: Callable[[], str]) -> CheckResult:
        self._evidence, self._notes = [], []
        warning = False
        try:
            summary, passed = check(), True
        except _Warning as verdict:
            summary, passed, warning = str(verdict), True, True
            self._undo_mounts()
        except _Failed as verdict:
            summary, passed = str(verdict), False
            self._undo_mounts()
        return CheckResult(name, passed, summary, self._evidence, self._notes, warning)

    def _undo_mounts(self) -> None:
        """Release what a failed check left mounted, so the next check starts clean."""
        for (name, mount_id), count in self._mounted.items():
            if count:
                self.note(f"releasing the {count} mount(s) this check left with id {mount_id[:12]}")
            for _ in range(count):
                try:
                    if not self.send("VolumeDriver.Unmount", {"Name": name, "ID": mount_id}).ok:
                        break
                except _Failed:
                    break

    def _checks(self) -> Iterator[tuple[str, Callable[[], str], str]]:
        """(name, check, the check it needs to have passed)."""
        yield "activate", self.check_activate, ""
        yield "capabilities", self.check_capabilities, "activate"
        yield "create", self.check_create, "activate"
        yield "create-idempotent", self.check_create_idempotent, "create"
        yield "get-unknown", self.check_get_unknown, "activate"
        yield "get", self.check_get, "create"
        yield "created-at", self.check_created_at, "create"
        yield "list-get-consistent", self.check_list_get, "create"
        yield "mount-repeated-id", self.check_mount_repeated_id, "create"
        yield "mount-distinct-ids", self.check_mount_distinct_ids, "create"
        yield "unmount-unknown-id", self.check_unmount_unknown_id, "create"
        yield "path", self.check_path, "create"
        yield "remove-while-mounted", self.check_remove_while_mounted, "create"
        yield "malformed-requests", self.check_malformed, "activate"
        yield "remove", self.check_remove, "create"

    def cleanup(self) -> list[str]:
        """Undo every mount and volume the checks made; say what could not be undone."""
        self._evidence, self._notes = [], []
        problems: list[str] = []
        for (name, mount_id), count in self._mounted.items():
            for _ in range(count):
                try:
                    reply = self.send("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})
                except _Failed as err:
                    problems.append(str(err))
                    break
                if not reply.ok:
                    problems.append(f"Unmount {name} {mount_id[:12]}: {reply.err}")
        for name in self._created:
            try:
                if self.get(name).ok:
                    reply = self.send("VolumeDriver.Remove", {"Name": name})
                    if not reply.ok:
                        problems.append(f"Remove {name}: {reply.err}")
            except _Failed as err:
                problems.append(str(err))
        return problems

    # -- the checks ----------------------------------------------------------

    def check_activate(self) -> str:
        reply = self.send("Plugin.Activate")
        implements = reply.data.get("Implements") if isinstance(reply.data, dict) else None
        if reply.status != 200 or not isinstance(implements, list):
            raise _Failed(f"Plugin.Activate gave no Implements list: {reply.err or reply.data!r}")
        if "VolumeDriver" not in implements:
            raise _Failed(f"Implements {implements}: VolumeDriver is missing")
        return f"Implements {implements}"

    def check_capabilities(self) -> str:
        reply = self.send("VolumeDriver.Capabilities", {})
        if not reply.ok:
            # Optional endpoint: the engine then assumes local scope.
            return f"no Capabilities ({reply.err}); the engine assumes scope local"
        caps = reply.data.get("Capabilities")
        scope = caps.get("Scope", "local") if isinstance(caps, dict) else "local"
        if not isinstance(scope, str) or scope.lower() not in ("local", "global"):
            raise _Failed(f"Scope {scope!r} is neither local nor global")
        return f"Scope {scope}"

    def check_create(self) -> str:
        reply = self.send("VolumeDriver.Create", {"Name": self.volume, "Opts": self.opts or None})
        if not reply.ok:
            hint = "" if self.opts else " (does the plugin need options? pass -o key=value)"
            raise _Failed(f"Create {self.volume} failed: {reply.err}{hint}")
        return f"created {self.volume}"

    def check_create_idempotent(self) -> str:
        # The engine calls Create whenever a Get fails, even for an existing volume.
        reply = self.send("VolumeDriver.Create", {"Name": self.volume, "Opts": self.opts or None})
        if not reply.ok:
            raise _Failed(f"a second Create of {self.volume} failed: {reply.err}")
        count = sum(v.get("Name") == self.volume for v in self.listed())
        if count != 1:
            raise _Failed(f"after two Creates, List shows {self.volume} {count} times")
        return "a second Create succeeded and List shows the volume once"

    def check_get_unknown(self) -> str:
        absent = f"{self.prefix}-absent"
        reply = self.get(absent)
        volume = reply.data.get("Volume") if isinstance(reply.data, dict) else None
        if reply.ok and volume is not None:
            raise _Failed(f"Get of never-created {absent} returned a volume: {volume!r}")
        if reply.ok:
            return "Volume null without Err (the engine reads: no such volume)"
        return f"refused with {reply.err!r}"

    def check_get(self) -> str:
        reply = self.get(self.volume)
        volume = reply.data.get("Volume") if isinstance(reply.data, dict) else None
        if not reply.ok or not isinstance(volume, dict):
            raise _Failed(f"Get {self.volume} failed: {reply.err or 'Volume is null'}")
        if volume.get("Name") != self.volume:
            raise _Failed(f"Get {self.volume} answered Name {volume.get('Name')!r}")
        return f"Name {self.volume}, Mountpoint {volume.get('Mountpoint', '')!r}"

    def check_created_at(self) -> str:
        reply = self.get(self.volume)
        volume = reply.data.get("Volume") if reply.ok else None
        if not isinstance(volume, dict):
            raise _Failed(f"Get {self.volume} failed: {reply.err}")
        seen = {"Get": volume}
        for entry in self.listed():
            if entry.get("Name") == self.volume:
                seen["List"] = entry
        shown = []
        for where, data in seen.items():
            if "CreatedAt" not in data:
                shown.append(f"{where}: absent (allowed)")
                continue
            value = data["CreatedAt"]
            if not _is_rfc3339(value):
                raise _Failed(
                    f"{where} CreatedAt {value!r} is not RFC 3339 with a zone: "
                    "the engine then treats the volume as gone"
                )
            shown.append(f"{where}: {value}")
        return "; ".join(shown)

    def check_list_get(self) -> str:
        listed = self.listed()
        names = [v.get("Name") for v in listed]
        if self.volume not in names:
            raise _Failed(f"List does not show {self.volume}")
        # Every listed volume must be gettable, with the same Mountpoint (first 20).
        for entry in listed[:20]:
            name = entry.get("Name")
            if not isinstance(name, str):
                raise _Failed(f"List has an entry without a Name: {entry!r}")
            reply = self.get(name)
            volume = reply.data.get("Volume") if reply.ok else None
            if not isinstance(volume, dict):
                raise _Failed(f"List shows {name} but Get fails: {reply.err or 'null'}")
            a, b = entry.get("Mountpoint") or "", volume.get("Mountpoint") or ""
            if a and b and a != b:
                raise _Failed(f"{name}: List says Mountpoint {a!r}, Get says {b!r}")
        return f"List shows {len(listed)} volume(s); each of the first 20 agrees with Get"

    def check_mount_repeated_id(self) -> str:
        # docker cp into a running container mounts again with the container's id.
        mount_id = _mount_id()
        first = self.mount(mount_id)
        second = self.mount(mount_id)
        if second != first:
            raise _Failed(f"the same id mounted at {first!r}, then at {second!r}")
        probe = _Probe.place(first, self)
        self.unmount(mount_id, "the first of two Unmounts")
        try:
            self._still_available(first, probe, "after one of two Unmounts with the same id")
        finally:
            probe.remove()
        self.unmount(mount_id, "the second Unmount")
        _released(first, probe)
        return "two Mounts with one id need two Unmounts; data stayed until the second"

    def check_mount_distinct_ids(self) -> str:
        one, two = _mount_id(), _mount_id()
        first = self.mount(one)
        if self.mount(two) != first:
            raise _Failed("two ids mounted the volume at different places")
        probe = _Probe.place(first, self)
        self.unmount(one)
        try:
            self._still_available(first, probe, "while another id still holds the volume")
        finally:
            probe.remove()
        self.unmount(two)
        _released(first, probe)
        return "the volume stayed mounted until the last of two ids let go"

    def check_unmount_unknown_id(self) -> str:
        # The engine may send an Unmount it never paired with a Mount (after a crash).
        reply = self.send("VolumeDriver.Unmount", {"Name": self.volume, "ID": _mount_id()})
        if not reply.ok:
            raise _Failed(f"Unmount with an id never mounted was refused: {reply.err}")
        return "an Unmount with an unknown id is tolerated"

    def check_path(self) -> str:
        mount_id = _mount_id()
        mountpoint = self.mount(mount_id)
        try:
            reply = self.send("VolumeDriver.Path", {"Name": self.volume})
            if not reply.ok or reply.data.get("Mountpoint") != mountpoint:
                raise _Failed(
                    f"Path of the mounted volume gave {reply.err or reply.data!r}, "
                    f"not Mountpoint {mountpoint!r}"
                )
        finally:
            self.unmount(mount_id)
        absent = self.send("VolumeDriver.Path", {"Name": f"{self.prefix}-absent"})
        if absent.ok and absent.data.get("Mountpoint"):
            raise _Failed(f"Path of a never-created volume answered {absent.data!r}")
        return f"Path gives the Mount's {mountpoint}; an unknown volume gets an error"

    def check_remove_while_mounted(self) -> str:
        mount_id = _mount_id()
        mountpoint = self.mount(mount_id)
        probe = _Probe.place(mountpoint, self)
        try:
            reply = self.send("VolumeDriver.Remove", {"Name": self.volume})
            if reply.ok:
                # Put it back so the checks after this one still have a volume.
                self.send("VolumeDriver.Create", {"Name": self.volume, "Opts": self.opts or None})
                raise _Warning(
                    "Remove of a mounted volume succeeded: the Docker engine never asks this "
                    "(it refuses docker volume rm while a container uses the volume), but "
                    "another client of the plugin could remove data in use"
                )
            if not self.get(self.volume).ok:
                raise _Failed("Remove was refused but the volume is gone")
            self._still_available(mountpoint, probe, "after the refused Remove")
        finally:
            probe.remove()
        self.unmount(mount_id)
        return f"refused with {reply.err!r}; volume and data kept"

    def check_malformed(self) -> str:
        escape = f"../{self.prefix}-escape"
        self._created += ["", escape]
        # (what, method, body, whether `docker volume create` can send it)
        bad: list[tuple[str, str, bytes, bool]] = [
            ("invalid JSON", "VolumeDriver.Create", b'{"Name": \n', False),
            ("a body that is not an object", "VolumeDriver.Create", b"[]\n", False),
            ("missing Name", "VolumeDriver.Create", b"{}\n", False),
            ("Name not a string", "VolumeDriver.Create", b'{"Name": 7}\n', False),
            ("a path-traversal Name", "VolumeDriver.Create", _body({"Name": escape}), True),
            ("Mount of a Name that is not a string", "VolumeDriver.Mount", b'{"Name": 7}\n', False),
            ("an unknown endpoint", "VolumeDriver.Explode", b"{}\n", False),
        ]
        accepted: list[tuple[str, bool]] = []
        for what, method, body, reachable in bad:
            reply = self.send(method, raw=body)
            if reply.ok:
                accepted.append((what, reachable))
            elif reply.status is not None and reply.status >= 500 and reply.data is None:
                self.note(f"{what}: {reply.described()} (no Err to show)")
        alive = self.send("VolumeDriver.List", {})
        if not alive.ok:
            raise _Failed(f"the plugin stopped answering after malformed requests: {alive.err}")
        leaked = [n for n in ("", escape) if self.get(n).ok]
        if accepted or leaked:
            summary = (
                f"accepted without error: {', '.join(w for w, _ in accepted) or 'nothing'}; "
                f"volumes made from bad names: {leaked or 'none'}"
            )
            # a `../` name reaches the plugin from `docker volume create`; the rest
            # only from clients other than the engine
            if escape in leaked or any(reachable for _, reachable in accepted):
                raise _Failed(summary)
            raise _Warning(f"{summary} (the Docker engine never sends these)")
        return f"all {len(bad)} malformed requests refused; the plugin still answers"

    def check_remove(self) -> str:
        reply = self.send("VolumeDriver.Remove", {"Name": self.volume})
        if not reply.ok:
            raise _Failed(f"Remove {self.volume} failed: {reply.err}")
        after = self.get(self.volume)
        volume = after.data.get("Volume") if after.ok else None
        if volume is not None:
            raise _Failed(f"Get still finds {self.volume} after Remove")
        if any(v.get("Name") == self.volume for v in self.listed()):
            raise _Failed(f"List still shows {self.volume} after Remove")
        return "removed; Get and List no longer show it"

    def _still_available(self, mountpoint: str, probe: _Probe, when: str) -> None:
        reply = self.send("VolumeDriver.Path", {"Name": self.volume})
        path = reply.data.get("Mountpoint") if reply.ok else None
        if path != mountpoint:
            raise _Failed(f"{when}, Path answered {reply.err or path!r} instead of {mountpoint!r}")
        if probe.written and not probe.readable():
            raise _Failed(f"{when}, the data written at {mountpoint} is gone")
        if probe.was_mount and not is_mountpoint(mountpoint):
            raise _Failed(f"{when}, {mountpoint} is no longer a mount point")


@dataclass
class _Probe:
    """A file written into a mounted volume to see that its data stays reachable."""

    path: Path | None
    written: bool
    was_mount: bool

    @classmethod
    def place(cls, mountpoint: str, suite: Conformance) -> _Probe:
        base = Path(mountpoint)
        if not base.is_dir():
            suite.note(f"{mountpoint} is not on this host: data checks left out")
            return cls(None, False, False)
        path = base / f".{suite.prefix}-probe"
        try:
            path.write_text("cargohold plugin check\n")
        except OSError as err:
            suite.note(f"could not write a probe file in {mountpoint}: {err.strerror}")
            return cls(None, False, is_mountpoint(base))
        # the mount table, not os.path.ismount: a btrfs subvolume's root is no mount
        was_mount = is_mountpoint(base)
        suite.note(f"wrote {path.name} in {mountpoint} (a mount point: {was_mount})")
        return cls(path, True, was_mount)

    def readable(self) -> bool:
        try:
            return self.path is not None and self.path.read_text() == "cargohold plugin check\n"
        except OSError:
            return False

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def _released(mountpoint: str, probe: _Probe) -> None:
    """After the last Unmount, a volume that was a mount point must be one no longer."""
    if probe.was_mount and is_mountpoint(mountpoint):
        raise _Failed(f"{mountpoint} is still a mount point after the last Unmount")


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode() + b"\n"


def _mount_id() -> str:
    return secrets.token_hex(32)


def _passed(results: list[CheckResult], name: str) -> bool:
    return any(r.name == name and r.passed for r in results)


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


def run_checks(
    address: PluginAddress, opts: Mapping[str, str] | None = None, **settings: Any
) -> Report:
    """Run the whole suite against the plugin at ``address`` and clean up after it."""
    client = PluginClient(address, **settings)
    suite = Conformance(client, opts)
    try:
        checks = suite.run()
        problems = suite.cleanup()
    finally:
        client.close()
    return Report(address.name, address.url, checks, problems)
