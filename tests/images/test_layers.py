"""Applying one layer tar to a directory: metadata, overlay's own form, refusals."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from cargohold.core.images.layers import LayerError, apply_layer
from cargohold.core.testing.snapshotters import layer

pytestmark = pytest.mark.root

# a file capability (cap_net_raw+ep): binary, not UTF-8
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")


def apply(tar: bytes, root: Path, style: str = "merged", lowers: tuple[Path, ...] = ()) -> None:
    apply_layer(io.BytesIO(tar), root, style, lowers)  # type: ignore[arg-type]


def test_binary_xattrs_are_kept_and_overlay_ones_ignored(tmp_path: Path) -> None:
    tar = layer(
        (
            "xattr",
            "ping",
            b"elf",
            {"security.capability": CAPABILITY.decode("utf-8", "surrogateescape")},
        ),
        ("xattr", "sneaky", b"x", {"trusted.overlay.redirect": "/etc"}),
    )
    apply(tar, tmp_path)
    assert os.getxattr(tmp_path / "ping", "security.capability") == CAPABILITY
    assert "trusted.overlay.redirect" not in os.listxattr(tmp_path / "sneaky")


def test_overlay_style_copies_a_lower_directory_it_must_create(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "opt").mkdir(parents=True)
    os.chown(lower / "opt", 1234, 5678)
    os.chmod(lower / "opt", 0o710)
    upper.mkdir()
    apply(layer(("file", "opt/new", b"n")), upper, "overlay", (lower,))
    st = os.stat(upper / "opt")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o710)
    assert (upper / "opt/new").read_bytes() == b"n"


def test_overlay_style_whiteouts_are_native(tmp_path: Path) -> None:
    apply(layer(("dir", "d"), ("opaque", "d"), ("whiteout", "gone")), tmp_path, "overlay")
    st = os.lstat(tmp_path / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "d", "trusted.overlay.opaque") == b"y"


def test_merged_style_opaque_keeps_the_same_layers_entries(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/old").write_text("o")
    apply(
        layer(("dir", "d"), ("file", "d/new", b"n"), ("opaque", "d"), ("whiteout", "none")),
        tmp_path,
    )
    assert sorted(os.listdir(tmp_path / "d")) == ["new"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((("hardlink", "x", "missing"),), "target not found"),
        ((("file", "a", b"1"), ("symlink", "a/b", "c")), "not a directory"),
        ((("whiteout", "../x"),), "outside the root"),
    ],
    ids=["hardlink-missing", "file-as-parent", "whiteout-escape"],
)
def test_malformed_layers_are_refused(tmp_path: Path, entries: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(LayerError, match=message):
        apply(layer(*entries), tmp_path)


def test_truncated_layer_is_refused(tmp_path: Path) -> None:
    tar = layer(("file", "big", os.urandom(100_000)))
    with pytest.raises(LayerError, match="corrupt or truncated"):
        apply(tar[:50_000], tmp_path)
