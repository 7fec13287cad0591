"""write_changes: the layer a commit writes, on plain directories (no root needed)."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from cargohold.core.containers.diff import write_changes


def test_changes_become_entries_and_deletions_whiteouts(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    for rel in ("keep/f", "gone/a", "swap/inner", "dir2file/x", "same"):
        (lower / rel).parent.mkdir(parents=True, exist_ok=True)
        (lower / rel).write_text(rel)
    (lower / "file2dir").write_text("was a file")
    (lower / "link").symlink_to("same")
    upper = tmp_path / "upper"
    shutil.copytree(lower, upper, symlinks=True)  # copy2 keeps mtimes: nothing changed yet
    shutil.rmtree(upper / "gone")
    (upper / "keep" / "f").write_text("changed!")
    (upper / "keep" / "new").write_text("new")
    shutil.rmtree(upper / "dir2file")
    (upper / "dir2file").write_text("now a file")
    (upper / "file2dir").unlink()
    (upper / "file2dir").mkdir()
    (upper / "file2dir" / "child").write_text("c")
    (upper / "link").unlink()
    (upper / "link").symlink_to("keep/f")
    os.chmod(upper / "swap" / "inner", 0o600)
    out = tmp_path / "layer.tar"
    write_changes(lower, upper, out)
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {
        ".wh.gone",
        "keep/f",
        "keep/new",
        "dir2file",
        "file2dir",
        "file2dir/child",
        "link",
        "swap/inner",
    }
    assert members["dir2file"].isfile() and members["file2dir"].isdir()
    assert members["link"].linkname == "keep/f"
    assert members["swap/inner"].mode == 0o600


def test_placeholders_are_left_out_when_new_and_empty(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "hosts").touch()  # a mount point the runtime made
    (upper / "etc" / "hostname").write_text("written by the user")
    out = tmp_path / "layer.tar"
    write_changes(lower, upper, out, placeholders=["etc/hosts", "etc/hostname"])
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["etc", "etc/hostname"]


# a file capability (cap_net_raw+ep): binary, not UTF-8
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")


def test_extended_attributes_are_kept_and_their_changes_seen(tmp_path: Path) -> None:
    from cargohold.core.images.layers import apply_layer

    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    (lower / "ping").write_bytes(b"elf")
    upper.mkdir()
    shutil.copy2(lower / "ping", upper / "ping")  # same size and mtime as below
    os.setxattr(upper / "ping", "user.note", b"\xff binary")  # only an attribute changed
    (upper / "new").write_text("n")
    os.setxattr(upper / "new", "user.tag", b"t")
    if os.geteuid() == 0:
        os.setxattr(upper / "new", "security.capability", CAPABILITY)
    out = tmp_path / "layer.tar"
    write_changes(lower, upper, out)
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["new", "ping"]
    applied = tmp_path / "applied"
    shutil.copytree(lower, applied)
    with open(out, "rb") as stream:
        apply_layer(stream, applied, "merged")
    assert os.getxattr(applied / "ping", "user.note") == b"\xff binary"
    assert os.getxattr(applied / "new", "user.tag") == b"t"
    if os.geteuid() == 0:
        assert os.getxattr(applied / "new", "security.capability") == CAPABILITY
