"""The runtime: one plugin manager, one state directory, the services on top."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from cargohold.core.plugin.manager import PluginManager, build_plugin_manager
from cargohold.core.state.locks import VolumeLocks
from cargohold.core.state.paths import default_state_dir
from cargohold.core.state.volume_store import Store
from cargohold.core.volumes.drivers import DriverRegistry
from cargohold.core.volumes.service import VolumeService

if TYPE_CHECKING:
    from cargohold.core.containers.service import ContainerService
    from cargohold.core.images.store import ImageStore
    from cargohold.core.snapshots.registry import SnapshotterRegistry


class Runtime:
    """Everything one cargohold process needs; no module-global state.

    ``state_dir`` defaults to `default_state_dir`; ``autoload`` and
    ``plugins`` go to `build_plugin_manager`.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        autoload: bool | None = None,
        plugins: Iterable[object] = (),
        blocked: Iterable[str] = (),
        plugin_manager: PluginManager | None = None,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).absolute()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a caller that already built one (the CLI) passes it: loading plugins costs ~0.2 s
        self.plugin_manager: PluginManager = plugin_manager or build_plugin_manager(
            autoload=autoload, blocked=blocked, plugins=plugins
        )
        self.hook = self.plugin_manager.hook
        self.store = Store(self.state_dir / "state.db")
        self.drivers = DriverRegistry(self.hook, self.state_dir / "drivers")
        self.volumes = VolumeService(
            self.store, self.drivers, VolumeLocks(self.state_dir / "locks"), self.hook
        )
        # snapshotters, images and containers are built on first use: importing
        # them is most of a volume command's start-up
        # (under a lock: the Engine API server serves requests from several threads)
        self._build_lock = threading.RLock()
        self._snapshotters: SnapshotterRegistry | None = None
        self._images: ImageStore | None = None
        self._containers: ContainerService | None = None

    @property
    def snapshotters(self) -> SnapshotterRegistry:
        """Copy-on-write layers; the registry opens its database on first use."""
        with self._build_lock:
            if self._snapshotters is None:
                from cargohold.core.snapshots.registry import SnapshotterRegistry

                self._snapshotters = SnapshotterRegistry(self.hook, self.state_dir)
            return self._snapshotters

    @property
    def images(self) -> ImageStore:
        """The image store; it opens its database on first use."""
        with self._build_lock:
            if self._images is None:
                from cargohold.core.images.store import ImageStore

                self._images = ImageStore(self.state_dir / "images", self.snapshotters)
            return self._images

    @property
    def containers(self) -> ContainerService:
        """The container service, built on first use (volume-only commands never pay for it)."""
        with self._build_lock:
            if self._containers is None:
                from cargohold.core.containers.service import ContainerService

                self._containers = ContainerService(
                    state_dir=self.state_dir,
                    hook=self.hook,
                    volumes=self.volumes,
                    images=self.images,
                    snapshotters=self.snapshotters,
                    host=self,  # passed on to hooks as their ``runtime``
                )
            return self._containers

    def close(self) -> None:
        self.close_drivers()
        if self._containers is not None:
            self._containers.close()
        if self._images is not None:
            self._images.close()
        if self._snapshotters is not None:
            self._snapshotters.close()
        self.store.close()

    def close_drivers(self) -> None:
        """Close the volume and snapshot drivers, and leave the databases open.

        What a process about to end calls instead of `close`: a driver may hold
        work (a cloud driver's uploads), but a database needs no closing, since
        every commit is already in its write-ahead log; closing the last
        connection would merge that log back (two fsyncs per database) at the
        end of every command.
        """
        if self._snapshotters is not None:
            self._snapshotters.close_drivers()
        self.drivers.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
