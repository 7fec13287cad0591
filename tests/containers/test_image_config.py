"""The image's Env, Entrypoint, Cmd, WorkingDir and User decide what runs, as in Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.core import Runtime

from .conftest import cli

pytestmark = pytest.mark.root

CHANGES = [
    'ENTRYPOINT ["sh", "-c"]',
    'CMD ["echo \\"$GREETING from $(pwd) as $(id -u)\\""]',
    "ENV GREETING=hi",
    "WORKDIR /srv/app",
    "USER app",
]


def test_run_uses_the_image_config_and_flags_override_it(rt: Runtime, busybox_rootfs: Path) -> None:
    rt.images.import_rootfs(busybox_rootfs, "cfg:1", changes=CHANGES)
    plain = cli(rt.state_dir, "run", "--rm", "cfg:1")
    assert (plain.returncode, plain.stdout) == (0, "hi from /srv/app as 1000\n"), plain.stderr
    # arguments replace Cmd only: the Entrypoint stays
    replaced = cli(rt.state_dir, "run", "--rm", "cfg:1", "echo $GREETING; exit 5")
    assert (replaced.returncode, replaced.stdout) == (5, "hi\n")
    flags = cli(rt.state_dir, "run", "--rm", "-e", "GREETING=bye", "-w", "/tmp", "-u", "0", "cfg:1")
    assert flags.stdout == "bye from /tmp as 0\n", flags.stderr
    on_a_file = cli(rt.state_dir, "run", "--rm", "-w", "/etc/passwd", "cfg:1")
    assert on_a_file.returncode == 125
    assert "working directory /etc/passwd is not a directory" in on_a_file.stderr
    assert cli(rt.state_dir, "ps", "-a", "-q").stdout == ""
