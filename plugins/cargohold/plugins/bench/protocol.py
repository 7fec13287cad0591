"""The protocol workload: one plugin call's latency against a no-op handler.

For targets reached over the Docker volume-plugin protocol (``served:NAME`` and
external plugins). One keep-alive connection per server sends
``VolumeDriver.Get`` of a volume the target holds; the floor is cargohold's
own plugin server (in the served child) answering a handler
that does nothing, timed in interleaved blocks so drift hits both alike.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

from cargohold.core.testing.bench import Case, Figure, figures_from_samples
from cargohold.plugins.bench.targets import VolumeTarget
from cargohold.plugins.docker.discovery import PluginAddress

NAME = "protocol"
PER_BLOCK = 100
MIN_BLOCKS = 2
CALL_TIMEOUT = 10.0  # a Get that takes this long is a wedged plugin


def run(target: VolumeTarget, case: Case, noop: PluginAddress) -> list[Figure]:
    from cargohold.plugins.docker.client import PluginClient

    if target.address is None:
        return []
    volume = f"chbproto{secrets.token_hex(3)}"
    target.create(volume)
    ours = PluginClient(target.address, backoff=(0.1, 0.5), timeout=CALL_TIMEOUT)
    floor = PluginClient(noop, backoff=(0.1, 0.5), timeout=CALL_TIMEOUT)
    # the plugin knows the volume by its own name: the service passes it through
    body = json.dumps({"Name": volume}).encode() + b"\n"
    try:
        calls: dict[str, Callable[[], object]] = {
            "floor": lambda: floor.post("Bench.Noop", body),
            "target": lambda: ours.post("VolumeDriver.Get", body),
        }
        for call in calls.values():  # warm connections and caches
            for _ in range(20):
                call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        blocks = max(MIN_BLOCKS, case.rounds // 10)
        for block in range(blocks):
            if block >= MIN_BLOCKS and case.expired():
                break
            for name, call in calls.items():
                taken = samples[name]
                for _ in range(PER_BLOCK):
                    began = time.perf_counter()
                    answer = call()
                    taken.append(time.perf_counter() - began)
                    del answer
            case.advance((block + 1) / blocks)
    finally:
        ours.close()
        floor.close()
        target.remove(volume)
    case.advance(1.0)
    return figures_from_samples(
        NAME, "Get", samples["target"], samples["floor"], "no-op handler (cargohold serve)"
    )
