"""A container sees its own namespaces and only its own root: pivot_root, not chroot."""

from __future__ import annotations

import os

import pytest

from cargohold.core import Runtime

from .conftest import IMAGE, cli

pytestmark = pytest.mark.root

KINDS = ("mnt", "pid", "uts", "ipc", "net")
SCRIPT = (
    "for n in "
    + " ".join(KINDS)
    + "; do readlink /proc/self/ns/$n; done; "
    + ("cut -d' ' -f5 /proc/self/mountinfo")
)

MOUNTED_BY_RUNTIME = (
    *("/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"),
    *("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"),
)


def inside(rt: Runtime, network: str) -> tuple[dict[str, str], list[str]]:
    done = cli(rt.state_dir, "run", "--rm", "--network", network, IMAGE, "sh", "-c", SCRIPT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return dict(zip(KINDS, lines[: len(KINDS)], strict=True)), lines[len(KINDS) :]


def test_new_namespaces_and_nothing_of_the_host_mounted(rt: Runtime) -> None:
    host = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in KINDS}
    isolated, mount_points = inside(rt, "none")
    assert all(isolated[kind] != host[kind] for kind in KINDS), (isolated, host)
    shared, _ = inside(rt, "host")
    assert shared["net"] == host["net"]
    assert all(shared[kind] != host[kind] for kind in ("mnt", "pid", "uts", "ipc"))
    # the old root is gone after pivot_root: only what the runtime mounted is there
    assert sorted(mount_points) == sorted(MOUNTED_BY_RUNTIME)
