"""Where cargohold keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "CARGOHOLD_STATE_DIR"


def default_state_dir() -> Path:
    """``$CARGOHOLD_STATE_DIR``, else ``/var/lib/cargohold`` as root, else the XDG state dir."""
    if override := os.environ.get(STATE_DIR_ENV):
        return Path(override).absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/cargohold")
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(xdg) / "cargohold"
