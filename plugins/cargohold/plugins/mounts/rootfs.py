"""The default root filesystem: the image's layers and a writable snapshot on top."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cargohold.core import hookimpl

if TYPE_CHECKING:
    from cargohold.core.containers.records import Container, Rootfs
    from cargohold.core.images.records import Image
    from cargohold.core.runtime import Runtime


class SnapshotRootfs:
    """Answers last, so a plugin that builds root filesystems otherwise takes precedence."""

    @hookimpl(trylast=True)
    def cargohold_rootfs(self, container: Container, image: Image, runtime: Runtime) -> Rootfs:
        from cargohold.core.containers.records import CONTAINER_LABEL, Rootfs

        snapshotter = runtime.snapshotters.default()
        parent = runtime.images.unpacked_chain(image, snapshotter)
        key = f"container-{container.id}"
        snapshotter.prepare(key, parent, labels={CONTAINER_LABEL: container.id})
        return Rootfs(snapshotter.name, key)


plugin = SnapshotRootfs()
