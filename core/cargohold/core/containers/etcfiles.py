"""Docker's ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf`` for a container.

They are files in the container's directory bound over the image's, so they
never land in the container's layer (a commit does not keep them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cargohold.core.api.container_mounts import PreparedMount
from cargohold.core.containers.records import Container

#: Where `etc_files` mounts; an empty file the runner made there is no change to commit.
PLACEHOLDERS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


def _read_host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def etc_files(
    container: Container, directory: Path, plan: Sequence[PreparedMount]
) -> list[PreparedMount]:
    """The three files' binds, written into ``directory``, unless a mount in ``plan`` covers one."""
    taken = {m.target for m in plan}
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if container.network == "host":
        hosts = _read_host_file("/etc/hosts") or hosts
    else:
        hosts += f"127.0.1.1\t{container.hostname}\n"
    files = {
        "/etc/hostname": container.hostname + "\n",
        "/etc/hosts": hosts,
        "/etc/resolv.conf": _read_host_file("/etc/resolv.conf"),
    }
    made = []
    for target, content in files.items():
        if target in taken:
            continue
        path = directory / os.path.basename(target)
        if not path.exists():  # written once: edits inside the container survive a restart
            path.write_text(content)
            path.chmod(0o644)
        made.append(PreparedMount(target, str(path)))
    return made
