"""``commit``: a container's changes, deletions included, become an image layer."""

from __future__ import annotations

import tarfile
import time

import pytest

from cargohold.core import Conflict, Runtime
from cargohold.core.api.container_mounts import parse_all
from cargohold.core.containers.procfs import state as _state

from .conftest import IMAGE, cli

pytestmark = pytest.mark.root


def test_commit_keeps_additions_changes_and_deletions(rt: Runtime) -> None:
    service = rt.containers
    script = (
        "rm /seed/from-image; echo new > /added; echo changed > /etc/group; "
        "rm /bin/stat; mkdir -p /deep/dir; echo x > /deep/dir/f"
    )
    container = service.create(IMAGE, ["sh", "-c", script], env=["FROM_CONTAINER=1"])
    assert service.supervise(container.id) == 0
    done = cli(
        rt.state_dir,
        "commit",
        "-m",
        "my change",
        "-c",
        'CMD ["cat", "/added"]',
        container.id,
        "committed:1",
    )
    assert done.returncode == 0, done.stderr
    image = rt.images.get("committed:1")
    assert done.stdout.strip() == image.id
    base = rt.images.get(IMAGE)
    assert image.diff_ids[:-1] == base.diff_ids and len(image.diff_ids) == 2
    assert image.cmd == ["cat", "/added"] and "FROM_CONTAINER=1" in image.env
    # the new layer: whiteouts for deletions, the new and changed files
    with tarfile.open(rt.images.layer_path(image.diff_ids[-1])) as layer:
        names = set(layer.getnames())
    assert {"seed/.wh.from-image", "bin/.wh.stat", "added", "etc/group", "deep/dir/f"} <= names
    assert "bin/busybox" not in names  # unchanged files stay in the layer below
    assert "etc/hosts" not in names and "etc/hostname" not in names  # mount points only
    # and a container of the new image sees exactly that
    check = service.create(
        "committed:1",
        [
            "sh",
            "-c",
            "ls -A /seed; cat /added /etc/group /deep/dir/f; test -e /bin/stat || echo gone",
        ],
    )
    assert service.supervise(check.id) == 0
    out = b"".join(d for s, d in service.logs(check.id) if s == "stdout").decode()
    assert out == "new\nchanged\nx\ngone\n"
    default = cli(rt.state_dir, "run", "--rm", "committed:1")
    assert default.stdout == "new\n"


def test_commit_of_a_running_container_pauses_it_and_skips_its_mounts(rt: Runtime) -> None:
    service = rt.containers
    script = (
        "rm /seed/from-image; echo live > /made; echo vol > /data/v; echo tmp > /t/x; "
        "echo ready; while true; do sleep 0.1; done"
    )
    running = service.create(
        IMAGE, ["sh", "-c", script], mounts=parse_all(volumes=["/data"], tmpfs=["/t"])
    )
    service.start(running.id)
    deadline = time.monotonic() + 10
    while b"ready" not in b"".join(d for _, d in service.logs(running.id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    image = service.commit(running.id, "live:1")
    with tarfile.open(rt.images.layer_path(image.diff_ids[-1])) as layer:
        names = set(layer.getnames())
    assert {"made", "seed/.wh.from-image"} <= names
    leaked = {n for n in names if n.split("/")[0] in ("proc", "sys", "dev", "t", "data")}
    assert not {n for n in leaked if "/" in n}  # nothing from what is mounted in it
    after = service.get(running.id)
    assert after.state.running and _state(after.state.pid) != "T"  # resumed
    assert service.stop(running.id, timeout=0).state.exit_code == 137
    with pytest.raises(Conflict, match="not running"):
        service.kill(running.id)
