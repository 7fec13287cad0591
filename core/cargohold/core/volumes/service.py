"""The volume service: names, metadata, references, locks and option checks.

Modelled on moby's volume service: the service owns every fact about a
volume, and a driver is asked only to move bytes. A driver hears ``mount``
for the first reference of a volume and ``unmount`` for the last one.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cargohold.core.api.clock import utc_now
from cargohold.core.api.errors import (
    CargoholdError,
    Conflict,
    InUse,
    InvalidArgument,
    NotFound,
    NotSupported,
    Unavailable,
)
from cargohold.core.api.events import VolumeAction, VolumeEvent
from cargohold.core.api.logs import get_logger
from cargohold.core.api.volume_driver import Option, VolumeDriver
from cargohold.core.state.locks import VolumeLocks
from cargohold.core.state.volume_store import Store, VolumeRecord
from cargohold.core.volumes import secret_refs
from cargohold.core.volumes.drivers import DriverRegistry
from cargohold.core.volumes.filters import Filters, labels_match, truthy
from cargohold.core.volumes.names import anonymous_volume_name, validate_volume_name

# The block-array contract is for volume snapshots only; a volume command does
# not pay for it at start-up.
if TYPE_CHECKING:
    from cargohold.core.api.arrays import ArraySnapshot, VolumeSnapshots

log = get_logger(__name__)

ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass(frozen=True)
class Volume:
    """A volume as users see it (``inspect``); secret options show their references."""

    name: str
    driver: str
    mountpoint: str
    created_at: str
    labels: Mapping[str, str]
    options: Mapping[str, str]
    scope: str
    status: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, int] = field(default_factory=dict)

    @property
    def ref_count(self) -> int:
        return sum(self.refs.values())

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


class PruneReport(NamedTuple):  # (a frozen dataclass costs every command ~1 ms to define)
    removed: list[str]
    space_reclaimed: int


class VolumeService:
    def __init__(
        self, store: Store, drivers: DriverRegistry, locks: VolumeLocks, hook: Any
    ) -> None:
        self.store = store
        self.drivers = drivers
        self.locks = locks
        self.hook = hook

    # -- create --------------------------------------------------------------

    def create(
        self,
        name: str | None = None,
        driver: str = "local",
        opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        anonymous: bool = False,
    ) -> Volume:
        """Create a volume, or return the existing one if nothing asked differs.

        With no ``name`` a 64-hex name is made; ``anonymous`` also adds
        Docker's anonymous-volume label (volumes made for a container).
        """
        name = anonymous_volume_name() if name is None else validate_volume_name(name)
        raw_opts = _string_map(opts, "option")
        labels = _string_map(labels, "label")
        if anonymous:
            labels = {**labels, ANONYMOUS_LABEL: ""}
        drv = self.drivers.get(driver)
        typed = check_options(drv, raw_opts)
        with self._locked(name):
            existing = self.store.get(name)
            if existing is not None:
                secret = {o.name for o in drv.options if o.secret}
                _check_same(existing, driver, raw_opts, labels, secret)
                return self._view(existing, drv)
            self.hook.cargohold_validate_volume(name=name, driver=driver, opts=typed)
            resolved, values = self._resolve(drv, typed)
            with self._source_locked(name, driver, drv, typed), secret_refs.redacting(values):
                drv.create(name, resolved)
            record = VolumeRecord(
                name=name,
                driver=driver,
                options=raw_opts,
                labels=labels,
                created_at=utc_now(),
            )
            self.store.add(record)
        self._emit("create", record)
        return self._view(record, drv)

    @contextlib.contextmanager
    def _source_locked(
        self, name: str, driver: str, drv: VolumeDriver, typed: Mapping[str, Any]
    ) -> Iterator[None]:
        """Hold the lock of the volume a clone or restore is made from (``from=VOL``,
        ``snapshot=VOL@SNAP``), which must be a volume of the same driver."""
        from cargohold.core.api.arrays import VolumeSnapshots

        origin = typed.get("from") or str(typed.get("snapshot") or "").partition("@")[0]
        if not origin or not isinstance(drv, VolumeSnapshots):
            yield
            return
        source = self.store.get(validate_volume_name(str(origin)))
        if source is None or source.driver != driver or origin == name:
            raise InvalidArgument(
                f"volume {name}: no {driver} volume {origin} to make it from "
                f"(see: cargohold volume ls --filter driver={driver})"
            )
        with self._locked(source.name):
            yield

    # -- snapshots (drivers that keep them: VolumeSnapshots) -----------------

    def snapshot(self, name: str, snapshot: str) -> None:
        """Take snapshot ``snapshot`` of volume ``name`` (mounted or not)."""
        with self._snapshots_of(name) as drv:
            drv.snapshot(name, snapshot)

    def snapshots(self, name: str) -> builtins.list[ArraySnapshot]:
        with self._snapshots_of(name) as drv:
            return drv.snapshots(name)

    def remove_snapshot(self, name: str, snapshot: str) -> None:
        with self._snapshots_of(name) as drv:
            drv.remove_snapshot(name, snapshot)

    @contextlib.contextmanager
    def _snapshots_of(self, name: str) -> Iterator[VolumeSnapshots]:
        from cargohold.core.api.arrays import VolumeSnapshots

        with self._locked(validate_volume_name(name)):
            record = self._record(name)
            drv = self.drivers.get(record.driver)
            if not isinstance(drv, VolumeSnapshots) or not drv.capabilities.snapshot:
                raise NotSupported(
                    f"volume {name}: driver {record.driver} keeps no snapshots; "
                    "the array drivers (loop, btrfs) do"
                )
            yield drv

    # -- read ----------------------------------------------------------------

    def get(self, name: str) -> Volume:
        record = self._record(name)
        return self._view(record, self.drivers.get(record.driver))

    def list(self, filters: Filters | None = None) -> list[Volume]:
        filters = filters or {}
        records = [r for r in self.store.list() if _matches(r, filters)]
        return [self._listed_view(r) for r in records]

    def _listed_view(self, record: VolumeRecord) -> Volume:
        # A volume whose driver's plugin is gone still lists, so it can be seen and dealt with.
        try:
            drv = self.drivers.get(record.driver)
        except (NotFound, Unavailable) as err:
            return Volume(
                name=record.name,
                driver=record.driver,
                mountpoint=record.mountpoint or "",
                created_at=record.created_at,
                labels=record.labels,
                options=record.options,
                scope="local",
                status={"error": str(err)},
                refs=record.refs,
            )
        return self._view(record, drv, with_status=False)

    def path(self, name: str) -> Path | None:
        """Where the volume is mounted now, or None when it is not mounted."""
        record = self._record(name)
        return Path(record.mountpoint) if record.mountpoint else None

    # -- remove --------------------------------------------------------------

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a volume and its data. Refused while any reference holds it.

        ``force`` makes a missing volume no error; it never overrides references.
        """
        validate_volume_name(name)
        with self._locked(name):
            record = self.store.get(name)
            if record is None:
                if force:
                    return
                raise NotFound(f"no such volume: {name}")
            self._remove_locked(record)
        self._emit("remove", record)

    def _remove_locked(self, record: VolumeRecord) -> None:
        if record.users:
            users = ", ".join(record.users)
            raise InUse(
                f"volume {record.name} is in use - [{users}]: stop or remove what uses it first"
            )
        with self._driver_for(record) as (drv, resolved):
            try:
                drv.remove(record.name, resolved)
            except NotFound:
                log.warning("driver %s had no data for volume %s", record.driver, record.name)
        self.store.delete(record.name)

    def prune(self, filters: Filters | None = None) -> PruneReport:
        """Remove unused volumes: anonymous ones only, unless ``all=true``."""
        filters = filters or {}
        prune_all = bool(truthy(filters, "all"))
        removed: list[str] = []
        space = 0
        for record in self.store.list():
            if record.users or not _matches(record, filters):
                continue
            if not prune_all and ANONYMOUS_LABEL not in record.labels:
                continue
            with self._locked(record.name):
                current = self.store.get(record.name)
                if current is None or current.users:
                    continue
                drv = self.drivers.get(current.driver)
                if drv.capabilities.usage:
                    with contextlib.suppress(CargoholdError):
                        space += drv.usage(current.name)
                self._remove_locked(current)
            removed.append(current.name)
            self._emit("prune", current)
        return PruneReport(removed, space)

    # -- mount ---------------------------------------------------------------

    def mount(self, name: str, mount_id: str) -> Path:
        """Take a reference for ``mount_id`` and return the host path of the data.

        The same ``mount_id`` may mount twice (Docker's ``cp`` does); each
        mount needs its own unmount.
        """
        validate_volume_name(name)
        _check_mount_id(mount_id)
        with self._locked(name):
            record = self._record(name)
            if record.mountpoint is not None:
                path = Path(record.mountpoint)
            else:
                with self._driver_for(record) as (drv, resolved):
                    path = drv.mount(name, mount_id, resolved)
            self.store.add_ref(name, mount_id, str(path))
        self._emit("mount", record, id=mount_id)
        return path

    def unmount(self, name: str, mount_id: str) -> None:
        """Drop one reference of ``mount_id``; an unknown id is no error."""
        validate_volume_name(name)
        with self._locked(name):
            record = self._record(name)
            count = record.refs.get(mount_id, 0)
            if count == 0:
                log.info("unmount of volume %s by unknown id %s ignored", name, mount_id)
                return
            if record.ref_count == 1:
                with self._driver_for(record) as (drv, resolved):
                    drv.unmount(name, mount_id, resolved)
            self.store.drop_ref(name, mount_id)
        self._emit("unmount", record, id=mount_id)

    def drop_refs(self, name: str, mount_ids: Collection[str] | None = None) -> dict[str, int]:
        """Drop every count of ``mount_ids`` (all references when None): the operator's
        answer to references whose Unmount never came, as after an engine crash.

        The driver unmounts when the last reference goes. A reference that is also
        a hold belongs to a container cargohold runs and is refused. Returns what
        was dropped, as {mount id: count}.
        """
        validate_volume_name(name)
        with self._locked(name):
            record = self._record(name)
            chosen = builtins.list(record.refs) if mount_ids is None else builtins.list(mount_ids)
            unknown = [i for i in chosen if i not in record.refs]
            if unknown:
                known = ", ".join(record.refs) or "none"
                raise NotFound(
                    f"volume {name} has no reference {', '.join(unknown)} (its references: "
                    f"{known}); see them with cargohold volume inspect {name}"
                )
            held = [i for i in chosen if i in record.holders]
            if held:
                raise InUse(
                    f"volume {name}: reference {', '.join(held)} belongs to a container "
                    "cargohold runs; stop or remove that container instead"
                )
            dropped = {i: record.refs[i] for i in chosen}
            if dropped and sum(dropped.values()) == record.ref_count:
                with self._driver_for(record) as (drv, resolved):
                    drv.unmount(name, chosen[-1], resolved)
            for mount_id in dropped:
                self.store.drop_ref(name, mount_id, every=True)
        for mount_id in dropped:
            self._emit("unmount", record, id=mount_id)
        return dropped

    # -- holds (containers that use a volume, running or not) ---------------

    def hold(self, name: str, holder: str) -> Volume:
        """Keep ``name`` from removal for ``holder`` (a container id) without mounting it.

        Docker's reference: taken when a container is created, released when
        it is removed, so a stopped container's volumes stay.
        """
        _check_mount_id(holder)
        with self._locked(name):
            record = self._record(name)
            self.store.add_hold(name, holder)
        return self._view(record, self.drivers.get(record.driver), with_status=False)

    def release(self, name: str, holder: str) -> None:
        """Drop ``holder``'s hold on ``name``; a missing volume or holder is no error."""
        validate_volume_name(name)
        with self._locked(name):
            self.store.drop_hold(name, holder)

    # -- helpers -------------------------------------------------------------

    def _locked(self, name: str) -> contextlib.AbstractContextManager[None]:
        """The volume's lock; its lock file goes when no volume of that name is left."""
        return self.locks.hold(name, keep=lambda: self.store.exists(name))

    def _record(self, name: str) -> VolumeRecord:
        validate_volume_name(name)
        record = self.store.get(name)
        if record is None:
            raise NotFound(f"no such volume: {name}")
        return record

    def _view(self, record: VolumeRecord, drv: VolumeDriver, with_status: bool = True) -> Volume:
        mountpoint = record.mountpoint
        status: Mapping[str, Any] = {}
        if with_status or mountpoint is None:
            try:
                reported = drv.get(record.name)
            except CargoholdError as err:
                status = {"error": str(err)}
            else:
                status = reported.status
                if mountpoint is None and reported.mountpoint is not None:
                    mountpoint = str(reported.mountpoint)
        return Volume(
            name=record.name,
            driver=record.driver,
            mountpoint=mountpoint or "",
            created_at=record.created_at,
            labels=record.labels,
            options=record.options,
            scope=drv.scope,
            status=status,
            refs=record.refs,
        )

    @contextlib.contextmanager
    def _driver_for(self, record: VolumeRecord) -> Iterator[tuple[VolumeDriver, dict[str, Any]]]:
        """The volume's driver and its options, secrets resolved; a secret is masked
        out of any error raised inside."""
        drv = self.drivers.get(record.driver)
        resolved, values = self._resolve(drv, check_options(drv, record.options))
        with secret_refs.redacting(values):
            yield drv, resolved

    def _resolve(
        self, drv: VolumeDriver, typed: Mapping[str, Any]
    ) -> tuple[dict[str, Any], builtins.list[str]]:
        """Swap secret references for values; also return the values, for redaction."""
        resolved = dict(typed)
        values: list[str] = []
        for option in drv.options:
            if option.secret and typed.get(option.name) is not None:
                value = secret_refs.resolve(self.hook, option.name, str(typed[option.name]))
                resolved[option.name] = value
                values.append(value)
        return resolved, values

    def _emit(self, action: VolumeAction, record: VolumeRecord, **attributes: str) -> None:
        event = VolumeEvent(action, record.name, record.driver, attributes)
        try:
            self.hook.cargohold_volume_event(event=event)
        except Exception:
            log.exception("a cargohold_volume_event hook failed for %s", record.name)


def check_options(drv: VolumeDriver, raw: Mapping[str, str]) -> dict[str, Any]:
    """Validate ``raw`` against the driver's declaration; return converted values."""
    declared: dict[str, Option] = {o.name: o for o in drv.options}
    unknown = sorted(set(raw) - set(declared))
    if unknown and not drv.accepts_any_option:
        valid = ", ".join(declared) or "none"
        raise InvalidArgument(
            f"invalid option {unknown[0]!r} for driver {drv.name}: valid options are {valid} "
            f"(see: cargohold volume create -d {drv.name} -o help)"
        )
    typed: dict[str, Any] = {name: raw[name] for name in unknown}
    for name, option in declared.items():
        if name in raw:
            typed[name] = raw[name] if option.secret else option.convert(raw[name])
        elif option.required:
            raise InvalidArgument(f"driver {drv.name} needs option {name}: {option.help}")
        elif option.default is not None:
            typed[name] = option.default
    return typed


def _check_same(
    existing: VolumeRecord,
    driver: str,
    opts: Mapping[str, str],
    labels: Mapping[str, str],
    secret: builtins.set[str],
) -> None:
    name = existing.name
    if existing.driver != driver:
        raise Conflict(
            f"driver {existing.driver!r} already has volume {name!r}: "
            "pick another name, or remove that volume first"
        )
    differences = _differences("option", existing.options, opts, secret)
    differences += _differences("label", existing.labels, labels)
    if differences:
        raise Conflict(
            f"volume {name!r} already exists with different settings: "
            f"{'; '.join(differences)}. Remove it first, or create it as it is"
        )


def _differences(
    kind: str, have: Mapping[str, str], asked: Mapping[str, str], secret: Collection[str] = ()
) -> list[str]:
    """What differs, when anything was asked at all (asking nothing accepts what exists).

    Values of ``secret`` keys are never shown: the ask may be a pasted secret.
    """
    if not asked or dict(have) == dict(asked):
        return []
    found = []
    for key in sorted(set(have) | set(asked)):
        if have.get(key) != asked.get(key) and key in secret:
            found.append(f"{kind} {key} (secret) has another reference")
        elif have.get(key) != asked.get(key):
            was = "unset" if key not in have else repr(have[key])
            now = "unset" if key not in asked else repr(asked[key])
            found.append(f"{kind} {key} is {was}, asked {now}")
    return found


def _matches(record: VolumeRecord, filters: Filters) -> bool:
    dangling = truthy(filters, "dangling")
    if dangling is not None and dangling != (not record.users):
        return False
    if "driver" in filters and record.driver not in filters["driver"]:
        return False
    if "name" in filters and not any(n in record.name for n in filters["name"]):
        return False
    if not labels_match(record.labels, filters.get("label", ())):
        return False
    return labels_match(record.labels, filters.get("label!", ()), negate=True)


def _string_map(values: Mapping[str, str] | None, kind: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in (values or {}).items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgument(f"bad {kind} {key!r}: keys and values must be strings")
        if "\0" in key or "\0" in value:
            raise InvalidArgument(f"bad {kind} {key!r}: NUL characters are not allowed")
        result[key] = value
    return result


def _check_mount_id(mount_id: str) -> None:
    if not isinstance(mount_id, str) or not mount_id or len(mount_id) > 256:
        raise InvalidArgument("mount id must be a non-empty string of at most 256 characters")
