"""The detached supervisor of one container: ``python -m cargohold.core.shim STATE ID FD``.

`cargohold.core.containers.supervisor.shim_launcher` starts it in its own
session, so the container outlives the command (or daemon) that started it.
It writes ``ok\\n`` on ``FD`` once the process runs, or ``CODE\\nmessage``
if it could not start, and then supervises the container to its end. It is
the one place outside the CLI allowed to build a `Runtime`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cargohold.core.api.errors import CargoholdError
from cargohold.core.containers.records import StartFailed
from cargohold.core.containers.runner import EXIT_RUNTIME

if TYPE_CHECKING:
    from cargohold.core.containers.records import Container
    from cargohold.core.runtime import Runtime


def supervise(runtime: Runtime, container_id: str, ready_fd: int) -> int:
    """Supervise ``container_id`` in this process, reporting the start on ``ready_fd``."""
    os.set_inheritable(ready_fd, False)

    def started(_: Container) -> None:
        os.write(ready_fd, b"ok\n")
        os.close(ready_fd)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)

    try:
        return runtime.containers.supervise(container_id, on_started=started)
    except StartFailed as err:
        os.write(ready_fd, f"{err.exit_code}\n{err}".encode())
        return err.exit_code
    except CargoholdError as err:
        with contextlib.suppress(OSError):
            os.write(ready_fd, f"{EXIT_RUNTIME}\n{err}".encode())
        return EXIT_RUNTIME


def main(argv: Sequence[str]) -> int:
    from cargohold.core.runtime import Runtime

    state_dir, container_id, ready_text = argv
    with Runtime(Path(state_dir)) as runtime:
        return supervise(runtime, container_id, int(ready_text))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
