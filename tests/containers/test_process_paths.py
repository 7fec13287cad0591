"""Mount targets resolve inside the container's root, whatever symlinks the image holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from cargohold.core.containers.runner import secure_join


def test_symlinks_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "data").symlink_to("/etc")  # absolute: the container's /etc, not the host's
    (root / "up").symlink_to("../../../..")
    (root / "loop").symlink_to("loop")
    assert secure_join(root, "/data/x") == root / "etc" / "x"
    assert secure_join(root, "/up/etc/passwd") == root / "etc" / "passwd"
    assert secure_join(root, "/../../x") == root / "x"
    made = secure_join(root, "/data/new/deeper", make_dir=True)
    assert made == root / "etc" / "new" / "deeper" and made.is_dir()
    with pytest.raises(OSError, match="too many symlinks"):
        secure_join(root, "/loop/x")
