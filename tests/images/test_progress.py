"""Long image commands show progress on a terminal, and only there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cargohold.core.testing.snapshotters import layer

from .builders import docker_archive
from .test_image_cli import CARGOHOLD

BIG = layer(("file", "blob", os.urandom(3 << 20)))


def run_on_terminal(state: Path, *args: str) -> tuple[int, str, str]:
    """Run cargohold with standard error on a pseudo-terminal; return code, stdout, terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env["CARGOHOLD_STATE_DIR"] = str(state)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [str(CARGOHOLD), *args], stdout=subprocess.PIPE, stderr=slave, env=env
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        out = proc.stdout.read() if proc.stdout else b""
        return proc.wait(timeout=60), out.decode(), seen.decode(errors="replace")
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_load_import_save_show_progress_on_a_terminal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    archive = docker_archive(tmp_path / "big.tar", [BIG], ["big:1"])
    code, out, terminal = run_on_terminal(state, "image", "load", "-i", str(archive))
    assert code == 0 and out == "Loaded image: big:1\n"
    size = archive.stat().st_size
    assert f"\rLoading {archive}: " in terminal
    assert terminal.rstrip().endswith(f"/ {size / 1e6:.3g}MB (100%)\x1b[K")

    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(BIG)
    code, out, terminal = run_on_terminal(state, "image", "import", str(rootfs), "flat:1")
    assert code == 0 and out.startswith("sha256:")
    assert f"Importing {rootfs}: " in terminal and "(100%)" in terminal

    code, out, terminal = run_on_terminal(
        state, "image", "save", "-o", str(tmp_path / "o.tar"), "big:1"
    )
    assert code == 0 and "Saving: " in terminal and "(100%)" in terminal


def test_no_progress_when_quiet_or_not_a_terminal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    archive = docker_archive(tmp_path / "big.tar", [BIG], ["big:1"])
    code, out, terminal = run_on_terminal(state, "image", "load", "-q", "-i", str(archive))
    assert (code, out, terminal) == (0, "", "")
    code, _, terminal = run_on_terminal(
        state, "image", "save", "-q", "-o", str(tmp_path / "o.tar"), "big:1"
    )
    assert (code, terminal) == (0, "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env["CARGOHOLD_STATE_DIR"] = str(state)
    piped = subprocess.run(
        [str(CARGOHOLD), "image", "load", "-i", str(archive)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, "Loaded image: big:1\n", "")
