"""``cargohold image ...`` as a user runs it: the real console script, a private state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from cargohold.core.testing.snapshotters import layer

from .builders import docker_archive, sha

CARGOHOLD = Path(sys.executable).parent / "cargohold"
BASE = layer(("dir", "bin"), ("file", "bin/tool", b"tool", 0o755))
TOP = layer(("file", "hello", b"world"))


def run(
    state: Path, *args: str, code: int = 0, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
    env["CARGOHOLD_STATE_DIR"] = str(state)
    result = subprocess.run(
        [str(CARGOHOLD), *args], input=stdin, capture_output=True, env=env, timeout=60
    )
    result = subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


def test_load_ls_inspect_save_rm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    archive = docker_archive(
        tmp_path / "a.tar", [BASE, TOP], ["web:1", "web:latest"], {"Cmd": ["x"]}
    )
    out = run(state, "image", "load", "-i", str(archive))
    assert out.stdout.splitlines() == ["Loaded image: web:1", "Loaded image: web:latest"]

    listing = run(state, "image", "ls").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[:2] for line in listing[1:]) == [["web", "1"], ["web", "latest"]]
    image_id = json.loads(run(state, "image", "inspect", "web:1").stdout)[0]["Id"]
    assert run(state, "images").stdout == run(state, "image", "ls").stdout  # docker's spelling
    assert run(state, "image", "ls", "-q").stdout.split() == [image_id[7:19]]

    inspected = json.loads(run(state, "image", "inspect", "web").stdout)[0]
    assert inspected["RootFS"]["Layers"] == [sha(BASE), sha(TOP)]
    assert inspected["Config"]["Cmd"] == ["x"]

    run(state, "image", "save", "-o", str(tmp_path / "out.tar"), "web:1")
    with tarfile.open(tmp_path / "out.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["web:1"]
    assert len(manifest[0]["Layers"]) == 2

    piped = run(state, "image", "save", "web:1").stdout
    assert len(piped) > 10240  # the archive went to stdout

    assert run(state, "image", "rm", "web:1").stdout == "Untagged: web:1\n"
    removed = run(state, "image", "rm", "web").stdout.splitlines()
    assert removed == ["Untagged: web:latest", f"Deleted: {image_id}"]
    assert run(state, "image", "ls", "-q").stdout == ""


def test_import_from_stdin(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = run(state, "image", "import", "-c", 'CMD ["/bin/tool"]', "-", "tools:2", stdin=BASE)
    image_id = out.stdout.strip()
    assert image_id.startswith("sha256:")
    inspected = json.loads(run(state, "image", "inspect", "tools:2").stdout)[0]
    assert inspected["Id"] == image_id
    assert inspected["Config"]["Cmd"] == ["/bin/tool"]
    assert inspected["RootFS"]["Layers"] == [sha(BASE)]


def test_errors_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    missing = run(state, "image", "inspect", "ghost:1", code=1)
    assert "no such image: ghost:1" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert "no such image" in run(state, "image", "rm", "ghost", code=1).stderr
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x00" * 100)
    failed = run(state, "image", "load", "-i", str(bad), code=1)
    assert failed.stderr.startswith("Error: ") and len(failed.stderr.splitlines()) == 1
    assert run(state, "image", "ls", "-q").stdout == ""
    assert "invalid reference" in run(state, "image", "import", str(bad), "Bad:Name", code=1).stderr
    run(state, "image", "load", code=2)  # -i is required: a usage error
