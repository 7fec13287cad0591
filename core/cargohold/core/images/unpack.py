"""Unpacking an image's layers into committed snapshots, once per layer and snapshotter."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from cargohold.core.api.errors import CargoholdError
from cargohold.core.api.logs import get_logger
from cargohold.core.api.snapshots import Info, Kind
from cargohold.core.images.records import LAYER_LABEL, Image
from cargohold.core.snapshots.service import Snapshotter, new_key

if TYPE_CHECKING:
    from cargohold.core.images.store import ImageStore

log = get_logger(__name__)


def unpacked_chain(store: ImageStore, image: Image, snapshotter: Snapshotter) -> str | None:
    """Unpack ``image``'s layers into committed snapshots; return the top one's key.

    Each layer is unpacked once per snapshotter, as the committed
    snapshot named by its chain id; later calls (and images sharing
    lower layers) reuse it. A container's root filesystem is then
    ``snapshotter.prepare(container_key, parent=<this key>)``. Returns
    None for an image without layers (prepare with no parent).
    """
    parent: str | None = None
    for diff_id, chain in zip(image.diff_ids, image.chain_ids(), strict=True):
        if not snapshotter.exists(chain):
            lock_name = f"unpack-{snapshotter.name}-{chain.removeprefix('sha256:')}"
            with store._locked(lock_name):
                if not snapshotter.exists(chain):
                    _remove_stale_unpacks(snapshotter, diff_id, parent)
                    _unpack(store, snapshotter, diff_id, chain, parent)
        parent = chain
    return parent


def _remove_stale_unpacks(snapshotter: Snapshotter, diff_id: str, parent: str | None) -> None:
    """Remove half-done unpacks of this layer: under its lock, any is a crash's."""

    def stale(info: Info) -> bool:
        return (
            info.kind is Kind.ACTIVE
            and info.key.startswith("unpack-")
            and info.parent == parent
            and info.labels.get(LAYER_LABEL) == diff_id
        )

    for info in snapshotter.walk(stale):
        log.info("removing snapshot %s left by an interrupted unpack", info.key)
        snapshotter.remove(info.key)


def _unpack(
    store: ImageStore, snapshotter: Snapshotter, diff_id: str, chain: str, parent: str | None
) -> None:
    from cargohold.core.images.layers import apply_to_snapshot

    layer = store.layer_path(diff_id)
    key = new_key("unpack")
    snapshotter.prepare(key, parent, labels={LAYER_LABEL: diff_id})
    try:
        with open(layer, "rb") as stream:
            apply_to_snapshot(snapshotter, key, stream, store.root / "tmp")
        snapshotter.commit(chain, key, labels={LAYER_LABEL: diff_id})
    except BaseException:
        with contextlib.suppress(CargoholdError, OSError):
            snapshotter.remove(key)
        raise
