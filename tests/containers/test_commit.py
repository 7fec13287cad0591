"""``commit``: a container's changes, deletions included, become an image layer."""

from __future__ import annotations

import tarfile

import pytest

from cargohold.core import Conflict, Runtime

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


def test_commit_refuses_a_running_container(rt: Runtime) -> None:
    service = rt.containers
    running = service.start(service.create(IMAGE, ["sleep", "100"]).id)
    with pytest.raises(Conflict, match="is running: stop it first"):
        service.commit(running.id, "nope:1")
