"""Lifecycle: create, mount, unmount and remove latency, alone and with N clients.

Each round times the floor's step and then the target's, so the machine's drift
hits both alike. The floors are what a volume is at its least: ``mkdir`` for
create, a bind mount for mount, ``umount`` for unmount, ``rmdir`` for remove.
With N concurrent clients each thread runs whole cycles on its own volume, and
the floor is N threads doing the same four system calls.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cargohold.core.testing.bench import floors
from cargohold.core.testing.bench.model import (
    Case,
    Figure,
    VolumeTarget,
    figures_from_samples,
    timed,
)

NAME = "lifecycle"
CONCURRENT = "concurrent"
STEPS = ("create", "mount", "unmount", "remove")
FLOOR_OF = {"create": "mkdir", "mount": "bind mount", "unmount": "umount", "remove": "rmdir"}
MIN_ROUNDS = 3


def mount_id() -> str:
    return secrets.token_hex(32)


class _FloorVolume:
    """The floor of one volume: a directory bind-mounted onto another."""

    def __init__(self, scratch: Path, key: str) -> None:
        self.data = scratch / f"{key}-data"
        self.point = scratch / f"{key}-point"
        self.point.mkdir(parents=True, exist_ok=True)

    def steps(self) -> dict[str, Callable[[], object]]:
        return {
            "create": self.data.mkdir,
            "mount": lambda: floors.bind(self.data, self.point),
            "unmount": lambda: floors.umount(self.point),
            "remove": self.data.rmdir,
        }

    def close(self) -> None:
        self.point.rmdir()


def _target_steps(target: VolumeTarget, volume: str) -> dict[str, Callable[[], object]]:
    ident = mount_id()
    return {
        "create": lambda: target.create(volume),
        "mount": lambda: target.mount(volume, ident),
        "unmount": lambda: target.unmount(volume, ident),
        "remove": lambda: target.remove(volume),
    }


def _cycle(steps: dict[str, Callable[[], object]]) -> dict[str, float]:
    return {step: timed(steps[step]) for step in STEPS}


def run(target: VolumeTarget, case: Case) -> list[Figure]:
    """Per-step figures (and the whole cycle) of one client."""
    prefix = f"chb{secrets.token_hex(3)}"
    scratch = case.workdir / "lifecycle"
    scratch.mkdir(parents=True, exist_ok=True)
    ours: dict[str, list[float]] = {s: [] for s in STEPS}
    floor: dict[str, list[float]] = {s: [] for s in STEPS}
    cycles: list[float] = []
    floor_cycles: list[float] = []
    bare = _FloorVolume(scratch, "alone")
    try:
        for i in range(case.rounds):
            if i >= MIN_ROUNDS and case.expired():
                break
            took_floor = _cycle(bare.steps())
            took = _cycle(_target_steps(target, f"{prefix}-{i}"))
            for step in STEPS:
                floor[step].append(took_floor[step])
                ours[step].append(took[step])
            cycles.append(sum(took.values()))
            floor_cycles.append(sum(took_floor.values()))
            case.advance((i + 1) / case.rounds)
    finally:
        bare.close()
    figures: list[Figure] = []
    for step in STEPS:
        figures += figures_from_samples(NAME, step, ours[step], floor[step], FLOOR_OF[step])
    figures += figures_from_samples(NAME, "cycle x1", cycles, floor_cycles, "mkdir+bind+rmdir")
    return figures


def run_concurrent(target: VolumeTarget, case: Case) -> list[Figure]:
    """Whole cycles by ``case.clients`` threads at once, each on its own volumes.

    A workload of its own, run last by ``cargohold bench``: a plugin that cannot
    take concurrent calls may stop answering altogether (rclone 1.75 does).
    """
    prefix = f"chb{secrets.token_hex(3)}"
    scratch = case.workdir / "concurrent"
    scratch.mkdir(parents=True, exist_ok=True)
    return _concurrent(target, case, prefix, scratch)


def _concurrent(target: VolumeTarget, case: Case, prefix: str, scratch: Path) -> list[Figure]:
    """Whole cycles by N threads at once, the floor's N threads first."""
    clients = case.clients
    half = case.left() / 2
    rounds = max(MIN_ROUNDS, case.rounds // clients)
    floor_samples = _threads(
        clients,
        rounds,
        half,
        lambda n, i: _FloorVolume(scratch, f"c{n}-{i}"),
        lambda vol, n, i: sum(_cycle(vol.steps()).values()) if vol else 0.0,
    )
    samples = _threads(
        clients,
        rounds,
        case.left(),
        lambda n, i: None,
        lambda _, n, i: sum(_cycle(_target_steps(target, f"{prefix}-c{n}-{i}")).values()),
    )
    extra = {"clients": clients}
    case.advance(1.0)
    return figures_from_samples(
        CONCURRENT,
        f"cycle x{clients}",
        samples,
        floor_samples,
        f"{clients} threads mkdir+bind+rmdir",
        extra=extra,
    )


def _threads(
    clients: int,
    rounds: int,
    seconds: float,
    setup: Callable[[int, int], _FloorVolume | None],
    work: Callable[[_FloorVolume | None, int, int], float],
) -> list[float]:
    """Run ``work`` in ``clients`` threads released together; a failure is re-raised."""
    samples: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)
    stop_at = time.monotonic() + seconds

    def client(n: int) -> None:
        start.wait()
        for i in range(rounds):
            if i >= 1 and time.monotonic() > stop_at:  # N clients: N samples at least
                return
            state = setup(n, i)
            try:
                took = work(state, n, i)
            except BaseException as err:  # reported once all threads are done
                with lock:
                    errors.append(err)
                return
            finally:
                if state is not None:
                    state.close()
            with lock:
                samples.append(took)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return samples
