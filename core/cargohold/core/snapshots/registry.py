"""Snapshotters by name: the drivers plugins register, and the default for this host."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from cargohold.core.api.errors import NotFound, NotSupported
from cargohold.core.api.logs import get_logger
from cargohold.core.api.snapshots import (
    SnapshotContext,
    SnapshotDriver,
)
from cargohold.core.plugin.registry import Registry
from cargohold.core.snapshots.service import Snapshotter
from cargohold.core.state.snapshot_store import SnapshotMetadata

log = get_logger(__name__)

#: Environment variable naming the snapshotter to use instead of probing.
SNAPSHOTTER_ENV = "CARGOHOLD_SNAPSHOTTER"


class SnapshotterRegistry:
    """Snapshot drivers collected from ``cargohold_snapshotters``, built on first use.

    Data lives under ``<state>/snapshots/<name>/``; metadata in
    ``<state>/snapshots.db``.
    """

    def __init__(self, hook: Any, state_dir: Path) -> None:
        self._hook = hook
        self.state_dir = state_dir
        self.root = state_dir / "snapshots"
        self._registry: Registry[SnapshotDriver] = Registry(
            hook.cargohold_snapshotters, SnapshotDriver, "snapshotter"
        )
        self._instances: dict[str, Snapshotter] = {}
        self._meta: SnapshotMetadata | None = None
        self._lock = threading.Lock()

    def classes(self) -> dict[str, type[SnapshotDriver]]:
        return self._registry.classes()

    def names(self) -> list[str]:
        return self._registry.names()

    def metadata(self) -> SnapshotMetadata:
        if self._meta is None:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._meta = SnapshotMetadata(self.state_dir / "snapshots.db")
        return self._meta

    def get(self, name: str) -> Snapshotter:
        """The snapshotter named ``name``; `NotFound` or `NotSupported` says why not."""
        with self._lock:
            snap = self._instances.get(name)
            if snap is None:
                cls = self._registry.find(name)
                if cls is None:
                    raise NotFound(
                        f"no snapshotter named {name!r}; installed: {', '.join(self.names())}"
                    )
                root = self.root / name
                reason = cls.unsupported_reason(root)
                if reason:
                    raise NotSupported(f"snapshotter {name!r} cannot run here: {reason}")
                root.mkdir(mode=0o700, parents=True, exist_ok=True)
                snap = Snapshotter(cls(SnapshotContext(root)), self.metadata())
                self._instances[name] = snap
            return snap

    def default_name(self) -> str:
        return default_snapshotter(self.state_dir, self._registry)

    def default(self) -> Snapshotter:
        """The snapshotter ``$CARGOHOLD_SNAPSHOTTER`` names, else the best for this host."""
        return self.get(self.default_name())

    def close_drivers(self) -> None:
        """Close every snapshot driver in use (the metadata database stays open)."""
        with self._lock:
            for snap in self._instances.values():
                snap.close()
            self._instances.clear()

    def close(self) -> None:
        self.close_drivers()
        with self._lock:
            if self._meta is not None:
                self._meta.close()
                self._meta = None


#: Tried in this order when probing, as Docker does: a filesystem's own
#: snapshots first, then overlay, then the copy that works anywhere.
PREFERENCE = ("btrfs", "overlay", "copy")


def default_snapshotter(state_dir: Path, registry: Registry[SnapshotDriver] | None = None) -> str:
    """The snapshotter to use for ``state_dir`` on this host.

    ``$CARGOHOLD_SNAPSHOTTER`` wins. Otherwise, as dockerd keeps its prior
    storage driver, the one snapshotter that already holds data here comes
    first, so its images stay in view; then `PREFERENCE`, then any other. The
    first whose driver can run (``unsupported_reason`` is None) is chosen; each
    is imported only when its turn comes.
    """
    if chosen := os.environ.get(SNAPSHOTTER_ENV):
        return chosen
    if registry is None:
        from cargohold.core.plugin.manager import build_plugin_manager

        hook = build_plugin_manager().hook
        registry = Registry(hook.cargohold_snapshotters, SnapshotDriver, "snapshotter")
    names = registry.names()
    order = [n for n in PREFERENCE if n in names] + sorted(set(names) - set(PREFERENCE))
    prior = [n for n in order if (state_dir / "snapshots" / n).is_dir()]
    if len(prior) == 1:
        order.remove(prior[0])
        order.insert(0, prior[0])
    reasons: list[str] = []
    for name in order:
        cls = registry.find(name)
        if cls is None:
            continue
        reason = cls.unsupported_reason(state_dir / "snapshots" / name)
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise NotSupported("no snapshotter can run here: " + "; ".join(reasons))
