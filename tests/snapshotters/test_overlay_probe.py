"""The overlay capability probe: one real mount per filesystem and boot, not per command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cargohold.drivers.snapshotters import overlay
from cargohold.drivers.snapshotters.overlay import PROBE_CACHE, OverlaySnapshotter

pytestmark = pytest.mark.root


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each real probe's base directory; every call starts as a fresh process would."""
    seen: list[Path] = []
    real = overlay._probe

    def counted(base: Path) -> str | None:
        seen.append(base)
        return real(base)

    monkeypatch.setattr(overlay, "_probe", counted)
    monkeypatch.setattr(overlay, "_probed", {})
    return seen


def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "_probed", {})


def test_a_working_probe_is_remembered_beside_the_root(
    tmp_path: Path, probes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = tmp_path / "state" / "snapshots"
    snapshots.mkdir(parents=True)
    root = snapshots / "overlay"
    assert OverlaySnapshotter.unsupported_reason(root) is None
    assert probes == [snapshots]
    key = (snapshots / PROBE_CACHE).read_text().split()
    assert key[1:] == [os.uname().release, str(snapshots.stat().st_dev)]

    fresh_process(monkeypatch)
    root.mkdir()
    assert OverlaySnapshotter.unsupported_reason(root) is None
    assert len(probes) == 1  # the next command mounts nothing
    assert os.listdir(root) == []  # and leaves nothing among the snapshots


def test_another_boot_probes_again(
    tmp_path: Path, probes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    stale = f"00000000-0000-0000-0000-000000000000 {os.uname().release} {snapshots.stat().st_dev}"
    (snapshots / PROBE_CACHE).write_text(stale + "\n")
    assert OverlaySnapshotter.unsupported_reason(snapshots / "overlay") is None
    assert len(probes) == 1
    assert (snapshots / PROBE_CACHE).read_text().strip() != stale


def test_no_directory_is_made_for_the_memo(tmp_path: Path, probes: list[Path]) -> None:
    root = tmp_path / "not" / "yet" / "overlay"
    assert OverlaySnapshotter.unsupported_reason(root) is None
    assert probes == [tmp_path]
    assert not (tmp_path / "not").exists()
    assert list(tmp_path.iterdir()) == []
