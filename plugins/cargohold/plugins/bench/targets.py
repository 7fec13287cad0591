"""What ``--driver`` names: a cargohold driver, a served driver, a Docker plugin, a snapshotter.

Spellings (the first that applies wins):

- ``served:NAME``: cargohold driver NAME served over the Docker volume-plugin
  protocol by a child process, and reached through the protocol client; set
  beside plain NAME it shows what the protocol costs;
- ``snapshotter:NAME``: a copy-on-write snapshotter (for the ``layers`` workload);
- ``NAME``: a cargohold volume driver (built-in or a third party's), else a
  snapshotter of that name, else a Docker volume plugin found where the engine
  finds plugins;
- a socket path or URL (``/run/docker/plugins/x.sock``, ``tcp://h:p``): that plugin.

Every volume target runs through the volume service of one private runtime, so
each pays what a user pays: names, locks, the store, the driver.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargohold.core import DriverContext, InvalidArgument, NotFound, Unavailable, hookimpl

if TYPE_CHECKING:
    from cargohold.core import Runtime, VolumeDriver, VolumeService
    from cargohold.core.snapshots.service import Snapshotter
    from cargohold.plugins.docker.discovery import PluginAddress

SERVED = "served:"
SNAPSHOTTER = "snapshotter:"
NOOP_PLUGIN = "chbench-noop"
SOCKET_DIR_MAX = 70  # leaves room for "/chbench-<driver>.sock"


def peer_defaults(plugin: str, workdir: Path) -> dict[str, str]:
    """Options a known peer cannot create a volume without.

    rclone's plugin needs a remote: a directory in the work directory, so its
    FUSE layer is measured over the same disk as the floors. VFS write caching
    lets it take random writes (without it rclone refuses them).
    """
    if plugin.startswith("rclone"):
        remote = workdir / "rclone-remote"
        remote.mkdir(parents=True, exist_ok=True)
        return {"remote": str(remote), "vfs-cache-mode": "writes"}
    return {}


@dataclass
class VolumeTarget:
    """A driver reached through the volume service (`cargohold.core.testing.bench.VolumeTarget`)."""

    name: str
    kind: str  # "driver", "served" or "plugin"
    volumes: VolumeService
    driver: str
    options: Mapping[str, str] = field(default_factory=dict)
    #: set for targets over the protocol: where to time Get and the no-op floor
    address: PluginAddress | None = None
    #: the driver keeps snapshots and clones (the arrays workload applies)
    snapshots: bool = False
    #: the driver syncs volumes with a store (the cloud workload applies)
    cloud: bool = False

    @property
    def size_mb(self) -> int:
        """The volumes' ``size`` option in MiB (64 when not given), for the arrays floor."""
        from cargohold.core import parse_size

        size = self.options.get("size")
        return max(1, parse_size(size) >> 20) if size else 64

    def create(self, volume: str) -> None:
        self.volumes.create(volume, self.driver, self.options)

    def mount(self, volume: str, mount_id: str) -> Path:
        return self.volumes.mount(volume, mount_id)

    def unmount(self, volume: str, mount_id: str) -> None:
        self.volumes.unmount(volume, mount_id)

    def remove(self, volume: str) -> None:
        self.volumes.remove(volume)

    def snapshot(self, volume: str, snapshot: str) -> None:
        self.volumes.snapshot(volume, snapshot)

    def remove_snapshot(self, volume: str, snapshot: str) -> None:
        self.volumes.remove_snapshot(volume, snapshot)

    def clone(self, source: str, volume: str) -> None:
        self.volumes.create(volume, self.driver, {**self.options, "from": source})

    def create_at(self, volume: str, prefix: str) -> None:
        base = self.options.get("prefix", "").strip("/")
        where = "/".join(p for p in (base, prefix) if p)
        self.volumes.create(volume, self.driver, {**self.options, "prefix": where})

    def settle(self, volume: str) -> None:
        """Wait for the volume's background write-back (the cloud drivers' workers)."""
        workers = getattr(self.volumes.drivers.get(self.driver), "workers", None)
        if workers is not None:
            workers.wait(volume)

    def cloud_floor(self) -> Any:
        from cargohold.plugins.bench.cloudfloor import floor_for

        return floor_for(self.driver, self.options)


class LayerTarget:
    """A snapshotter of the runtime (`cargohold.core.testing.bench.LayerTarget`)."""

    kind = "snapshotter"

    def __init__(self, name: str, snapshotter: Snapshotter) -> None:
        self.name = name
        self.snapshotter = snapshotter

    def prepare(self, key: str, parent: str | None) -> None:
        self.snapshotter.prepare(key, parent)

    def mount(self, key: str, target: Path) -> None:
        from cargohold.core.kernel.snapshot_mounts import mount_all

        mount_all(self.snapshotter.mounts(key), target)

    def unmount(self, target: Path) -> None:
        from cargohold.core.kernel.snapshot_mounts import unmount_all

        unmount_all(target)

    def commit(self, name: str, key: str) -> None:
        self.snapshotter.commit(name, key)

    def remove(self, key: str) -> None:
        self.snapshotter.remove(key)


class _Addresses:
    """A plugin for the private runtime: the bench's aliases of plugin addresses."""

    def __init__(self, timeout: float) -> None:
        self.addresses: dict[str, PluginAddress] = {}
        self.timeout = timeout

    @hookimpl(tryfirst=True)
    def cargohold_find_volume_driver(self, name: str, context: DriverContext) -> Any:
        from cargohold.plugins.docker.client import connect

        address = self.addresses.get(name)
        if address is None:
            return None
        return connect(address, context, backoff=(0.1, 0.2, 0.5, 1.0), timeout=self.timeout)


class ServedChild:
    """A child process serving drivers (and the no-op floor) as plugins on private sockets."""

    def __init__(self, workdir: Path, drivers: list[str]) -> None:
        self.sockets = workdir / "sockets"
        self._short: Path | None = None
        if len(str(self.sockets)) > SOCKET_DIR_MAX:
            # a unix socket's path has at most 107 bytes
            self._short = self.sockets = Path(tempfile.mkdtemp(prefix="chb-", dir="/tmp"))
        self.drivers = drivers
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "cargohold.plugins.bench.served", str(self.sockets)]
        self.process = subprocess.Popen(
            [*command, *self.drivers],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C reaches the bench, which stops the child
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise Unavailable(f"the served-driver child did not start ({line.strip()!r})")

    def address(self, plugin: str) -> PluginAddress:
        from cargohold.plugins.docker.discovery import PluginAddress

        path = self.sockets / f"{plugin}.sock"
        return PluginAddress(plugin, f"unix://{path}", source=path)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            assert process.stdin is not None
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)


def served_plugin_name(driver: str) -> str:
    return f"chbench-{driver}"


@dataclass
class Targets:
    """The resolved targets of one run and what they need kept alive."""

    volume: list[VolumeTarget] = field(default_factory=list)
    layers: list[LayerTarget] = field(default_factory=list)
    child: ServedChild | None = None
    noop: PluginAddress | None = None
    #: target name -> the workload in which it stopped answering
    gone: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.volume] + [t.name for t in self.layers]


def _option_map(spelled: list[str], options: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for key in ("*", *spelled):
        merged.update(options.get(key, {}))
    return merged


@contextlib.contextmanager
def resolve(
    specs: list[str],
    workdir: Path,
    options: Mapping[str, Mapping[str, str]],
    *,
    need_noop: bool = True,
    timeout: float = 60.0,
    data_mb: int = 64,
) -> Iterator[tuple[Runtime, Targets]]:
    """A private runtime in ``workdir`` and the targets ``specs`` name, torn down after.

    ``options`` maps a target spelling (or ``*``: every volume target) to the
    volume options its volumes are created with; ``timeout`` bounds each plugin call.
    """
    from cargohold.core import Runtime

    finder = _Addresses(timeout)
    runtime = Runtime(workdir / "state", plugins=[finder])
    found = Targets()
    try:
        known = runtime.drivers.classes()
        served = [s.removeprefix(SERVED) for s in specs if s.startswith(SERVED)]
        for driver in served:
            if driver not in known:
                raise NotFound(f"served:{driver}: no cargohold driver named {driver!r} to serve")
        if served or need_noop:
            found.child = ServedChild(workdir, served)
            found.child.start()
            found.noop = found.child.address(NOOP_PLUGIN)
        for spec in specs:
            found_one = _one(spec, runtime, finder, found, workdir, options, data_mb)
            if isinstance(found_one, LayerTarget):
                found.layers.append(found_one)
            else:
                found.volume.append(found_one)
        yield runtime, found
    finally:
        try:
            runtime.close()
        finally:
            if found.child is not None:
                found.child.stop()


def _one(
    spec: str,
    runtime: Runtime,
    finder: _Addresses,
    found: Targets,
    workdir: Path,
    options: Mapping[str, Mapping[str, str]],
    data_mb: int,
) -> VolumeTarget | LayerTarget:
    from cargohold.plugins.docker.discovery import address_for

    known = runtime.drivers.classes()
    if spec.startswith(SERVED):
        driver = spec.removeprefix(SERVED)
        assert found.child is not None
        alias = served_plugin_name(driver)
        finder.addresses[alias] = found.child.address(alias)
        opts = _option_map([spec, driver], options) or _example(runtime, driver, workdir, data_mb)
        return VolumeTarget(spec, "served", runtime.volumes, alias, opts, finder.addresses[alias])
    if spec.startswith(SNAPSHOTTER) or (spec not in known and _is_snapshotter(runtime, spec)):
        name = spec.removeprefix(SNAPSHOTTER)
        return LayerTarget(spec, runtime.snapshotters.get(name))
    if spec in known:
        opts = _option_map([spec], options) or _example(runtime, spec, workdir, data_mb)
        caps = known[spec].capabilities
        keeps = caps.snapshot and caps.clone
        # the cloud drivers name the module of their store's backend
        syncs = hasattr(known[spec], "backend_module")
        return VolumeTarget(
            spec, "driver", runtime.volumes, spec, opts, snapshots=keeps, cloud=syncs
        )
    address = address_for(spec)
    alias = f"chbench-plugin-{secrets.token_hex(3)}"
    finder.addresses[alias] = address
    opts = _option_map([spec], options) or peer_defaults(address.name, workdir)
    return VolumeTarget(spec, "plugin", runtime.volumes, alias, opts, address)


def _example(runtime: Runtime, driver: str, workdir: Path, data_mb: int) -> dict[str, str]:
    """The driver's own example of a plain volume (as ``cargohold driver check`` uses).

    ``{tmp}`` stands for an empty directory: one in the work directory, shared by
    the run's volumes of this driver. An example ``size`` grows to hold the data
    path's files (sequential, random and small ones, with room to spare).
    """
    from cargohold.core import parse_size

    cls: type[VolumeDriver] = runtime.drivers.classes()[driver]
    example = dict(cls.example_options)
    if "size" in example:
        room = (4 * data_mb + 64) << 20
        example["size"] = f"{max(parse_size(example['size']), room) >> 20}m"
    if any("{tmp}" in v for v in example.values()):
        tmp = workdir / f"example-{driver}"
        tmp.mkdir(parents=True, exist_ok=True)
        example = {k: v.replace("{tmp}", str(tmp)) for k, v in example.items()}
    return example


def _is_snapshotter(runtime: Runtime, name: str) -> bool:
    try:
        return name in runtime.snapshotters.names()
    except InvalidArgument:
        return False


def check_spelling(spec: str) -> None:
    if spec.startswith((SERVED, SNAPSHOTTER)) and not spec.split(":", 1)[1]:
        raise InvalidArgument(f"--driver {spec!r}: name the driver after the colon")
    if not spec or spec != spec.strip():
        raise InvalidArgument(f"--driver {spec!r} is not a driver name, socket or URL")
