"""Engine-API shapes only the daemon answers: ``wait`` and exec instances.

Container, image and volume shapes, which cargohold's CLI prints too, are in
the frontends' shared `cargohold.plugins.shapes`.
"""

from __future__ import annotations

from typing import Any


def wait_answer(code: int, error: str = "") -> dict[str, Any]:
    """``POST /containers/{id}/wait``'s body."""
    return {"StatusCode": code, "Error": {"Message": error} if error else None}


def exec_inspect(record: Any) -> dict[str, Any]:
    """``GET /exec/{id}/json``."""
    return {
        "ID": record.id,
        "ContainerID": record.container_id,
        "Running": record.running,
        "ExitCode": record.exit_code,
        "Pid": record.pid,
        "OpenStdin": record.stdin,
        "OpenStdout": True,
        "OpenStderr": True,
        "ProcessConfig": {
            "tty": record.tty,
            "entrypoint": record.args[0] if record.args else "",
            "arguments": list(record.args[1:]),
            "privileged": False,
            "user": record.user,
        },
        "CanRemove": False,
        "DetachKeys": "",
    }
