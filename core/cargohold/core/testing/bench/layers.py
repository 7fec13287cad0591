"""Copy-on-write layers: build a chain of N layers, assemble a root, copy up, start.

The target is a snapshotter (`LayerTarget`). Floors, interleaved round by round:

- *layer build* (prepare, write a layer's files, commit): the same files written
  into a plain directory;
- *assembly* of a writable root on the N-layer chain (prepare and mount): one bare
  overlay mount(2) over N plain directories holding the same files;
- *first-write copy-up* of a large file from the bottom layer: the same write on
  the bare overlay;
- *container start* (assembly, then ``unshare --mount --pid --fork chroot ROOT
  /bin/true``, then unmount and remove): the same on a bare overlay mount.
  It needs a static busybox (Debian ``busybox-static``) for the root's /bin/true.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from cargohold.core.testing.bench import floors
from cargohold.core.testing.bench.model import (
    Case,
    Figure,
    LayerTarget,
    failed,
    figures_from_samples,
    timed,
)

NAME = "layers"
DEPTH = 10
FILES_PER_LAYER = 4
COPY_UP_MB = 16
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
MIN_ROUNDS = 3


def _busybox() -> Path | None:
    for candidate in BUSYBOX:
        path = Path(candidate)
        if path.is_file():
            done = subprocess.run([path, "--help"], capture_output=True)
            static = b"ld-linux" not in path.read_bytes()[:4096]
            if done.returncode in (0, 1) and static:
                return path
    return None


def _fill(root: Path, index: int, busybox: Path | None) -> None:
    """A layer's files: a directory of small files; the bottom one holds the big file."""
    here = root / f"l{index:03d}"
    here.mkdir(parents=True, exist_ok=True)
    for j in range(FILES_PER_LAYER):
        (here / f"f{j}").write_bytes(os.urandom(1024))
    if index == 0:
        with open(root / "big", "wb") as out:
            out.write(os.urandom(COPY_UP_MB << 20))
        if busybox is not None:
            (root / "bin").mkdir(exist_ok=True)
            shutil.copy2(busybox, root / "bin" / "busybox")
            (root / "bin" / "true").symlink_to("busybox")


def _copy_up(root: Path) -> None:
    with open(root / "big", "r+b") as out:
        out.seek(0, os.SEEK_END)
        out.write(b"x")
        out.flush()
        os.fsync(out.fileno())


def _start(root: Path) -> None:
    command = ["unshare", "--mount", "--pid", "--fork", "chroot", str(root), "/bin/true"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


class _BareOverlay:
    """The floor: N plain directories and one overlay mount(2) over them."""

    def __init__(self, scratch: Path, depth: int, busybox: Path | None) -> None:
        self.scratch = scratch
        self.layers = [scratch / "lower" / str(i) for i in range(depth)]
        for i, layer in enumerate(self.layers):
            _fill(layer, i, busybox)
        self.count = 0

    def build(self) -> None:
        self.count += 1
        _fill(self.scratch / "built" / str(self.count), 1, None)

    def assemble(self, target: Path) -> tuple[Path, Path]:
        self.count += 1
        upper = self.scratch / f"upper{self.count}"
        work = self.scratch / f"work{self.count}"
        upper.mkdir()
        work.mkdir()
        # overlay's lowerdir lists the top layer first
        floors.overlay(list(reversed(self.layers)), upper, work, target)
        return upper, work

    def teardown(self, target: Path, made: tuple[Path, Path]) -> None:
        floors.umount(target)
        for path in made:
            shutil.rmtree(path)

    def start(self, target: Path) -> None:
        made = self.assemble(target)
        try:
            _start(target)
        finally:
            self.teardown(target, made)


class _Chain:
    """The same N layers committed in the target snapshotter."""

    def __init__(self, target: LayerTarget, scratch: Path, depth: int, busybox: Path | None):
        self.target = target
        self.prefix = f"chb{secrets.token_hex(3)}"
        self.scratch = scratch
        self.keys: list[str] = []
        self.names: list[str] = []
        self.count = 0
        parent: str | None = None
        for i in range(depth):
            parent = self._layer(parent, i, busybox)
        self.top = parent

    def _layer(self, parent: str | None, index: int, busybox: Path | None) -> str:
        self.count += 1
        key, name = f"{self.prefix}-k{self.count}", f"{self.prefix}-n{self.count}"
        self.target.prepare(key, parent)
        point = self.scratch / "build"
        point.mkdir(exist_ok=True)
        self.target.mount(key, point)
        try:
            _fill(point, index, busybox)
        finally:
            self.target.unmount(point)
        self.target.commit(name, key)
        self.names.append(name)
        return name

    def build(self) -> None:
        """One more layer on the top (it stays, removed with the chain)."""
        self._layer(self.top, 1, None)

    def assemble(self, target: Path) -> str:
        self.count += 1
        key = f"{self.prefix}-ctr{self.count}"
        self.target.prepare(key, self.top)
        self.target.mount(key, target)
        self.keys.append(key)
        return key

    def teardown(self, target: Path, key: str) -> None:
        self.target.unmount(target)
        self.target.remove(key)
        self.keys.remove(key)

    def start(self, target: Path) -> None:
        key = self.assemble(target)
        try:
            _start(target)
        finally:
            self.teardown(target, key)

    def close(self) -> None:
        for key in list(self.keys):
            self.target.remove(key)
        for name in reversed(self.names):
            self.target.remove(name)


def run(target: LayerTarget, case: Case, depth: int = DEPTH) -> list[Figure]:
    scratch = case.workdir / f"layers-{secrets.token_hex(3)}"
    point = scratch / "root"
    point.mkdir(parents=True)
    busybox = _busybox()
    bare = _BareOverlay(scratch / "floor", depth, busybox)
    chain = _Chain(target, scratch, depth, busybox)
    ours: dict[str, list[float]] = {k: [] for k in ("build", "assemble", "copy-up", "start")}
    floor: dict[str, list[float]] = {k: [] for k in ours}
    made: list[tuple[Path, Path]] = []
    keys: list[str] = []
    try:
        for i in range(case.rounds):
            if i >= MIN_ROUNDS and case.expired():
                break
            floor["build"].append(timed(bare.build))
            ours["build"].append(timed(chain.build))

            floor["assemble"].append(timed(lambda: made.append(bare.assemble(point))))
            floor["copy-up"].append(timed(lambda: _copy_up(point)))
            bare.teardown(point, made.pop())
            ours["assemble"].append(timed(lambda: keys.append(chain.assemble(point))))
            ours["copy-up"].append(timed(lambda: _copy_up(point)))
            chain.teardown(point, keys.pop())
            if busybox is not None:
                # a start is a fresh root, the process, and the root's teardown
                floor["start"].append(timed(lambda: bare.start(point)))
                ours["start"].append(timed(lambda: chain.start(point)))
            case.advance((i + 1) / case.rounds)
    finally:
        floors.unmount_everything_under(point)
        try:
            chain.close()
        finally:
            floors.unmount_everything_under(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
    extra = {"layers": depth}
    figures = figures_from_samples(
        NAME, "layer build", ours["build"], floor["build"], "mkdir+write", extra=extra
    )
    figures += figures_from_samples(
        NAME, f"assemble {depth} layers", ours["assemble"], floor["assemble"],
        "bare overlay mount", extra=extra,
    )  # fmt: skip
    figures += figures_from_samples(
        NAME, f"copy-up {COPY_UP_MB} MiB", ours["copy-up"], floor["copy-up"],
        "copy-up on bare overlay", extra=extra,
    )  # fmt: skip
    if busybox is None:
        figures.append(failed(NAME, "container start", "no static busybox for /bin/true"))
    else:
        figures += figures_from_samples(
            NAME, "container start", ours["start"], floor["start"],
            "bare overlay + unshare chroot", extra=extra,
        )  # fmt: skip
    case.advance(1.0)
    return figures
