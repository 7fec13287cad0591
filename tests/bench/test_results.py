"""Figures, ratios, statistics and the comparison of two runs, without running anything."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cargohold.core import InvalidArgument
from cargohold.core.testing.bench import Budget, Figure, Stats, failed, figures_from_samples
from cargohold.plugins.bench import report, results, targets


def test_ratio_reads_higher_is_worse_for_latency_and_throughput() -> None:
    slow = Figure("w", "create", "s", "lower", value=0.004, floor=0.001, floor_name="mkdir")
    assert slow.ratio == pytest.approx(4.0)
    narrow = Figure("w", "seq", "MB/s", "higher", value=100, floor=400, floor_name="dir")
    assert narrow.ratio == pytest.approx(4.0)
    assert math.isnan(failed("w", "x", "broke").ratio)


def test_p50_and_p99_figures_from_paired_samples() -> None:
    ours = [float(n) for n in range(1, 101)]
    floor = [n / 10 for n in ours]
    p50, p99 = figures_from_samples("w", "mount", ours, floor, "bind mount")
    assert (p50.name, p99.name) == ("mount p50", "mount p99")
    assert p50.value == pytest.approx(50.5) and p50.ratio == pytest.approx(10)
    assert p99.value == pytest.approx(99.01) and p99.ratio == pytest.approx(10)
    stats = Stats.of(ours)
    assert (stats.min, stats.max, stats.rounds) == (1.0, 100.0, 100)


def test_budget_shares_what_is_left() -> None:
    assert Budget(None).share(3) == math.inf
    share = Budget(30).share(3)
    assert 9 < share <= 10


def _doc(ratio: float) -> dict[str, object]:
    entry = results.entry(
        results.Result("local", "driver", Figure("w", "f", "s", "lower", ratio, 1.0, "x"))
    )
    return {"benchmarks": [entry]}


def test_compare_judges_the_ratio() -> None:
    changes, fresh = results.compare(_doc(2.0), _doc(3.0))
    assert fresh == []
    (change,) = changes
    assert change.name == "local/w/f"
    assert change.percent == pytest.approx(50.0)
    assert results.over(changes, 49) == changes
    assert results.over(changes, 50) == []
    improved, _ = results.compare(_doc(3.0), _doc(2.0))
    assert results.over(improved, 0) == []
    _, only_new = results.compare({"benchmarks": []}, _doc(1.0))
    assert only_new == ["local/w/f"]


def test_human_units() -> None:
    assert report.human(0.0000425, "s") == "42.5 us"
    assert report.human(0.00425, "s") == "4.25 ms"
    assert report.human(1234.4, "IOPS") == "1,234 IOPS"
    assert report.human(365.2, "MB/s") == "365 MB/s"
    assert report.human(math.nan, "s") == "-"


def test_markdown_escapes_cells() -> None:
    figure = Figure("w", "a|b", "s", "lower", 0.002, 0.001, "floor")
    text = report.markdown([results.Result("t", "driver", figure)])
    assert "a\\|b" in text and text.count("\n") == 3


@pytest.mark.parametrize("spec", ["served:", "snapshotter:", " local", ""])
def test_bad_target_spellings(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        targets.check_spelling(spec)


def test_peer_defaults_give_rclone_a_remote(tmp_path: Path) -> None:
    work = tmp_path
    opts = targets.peer_defaults("rclone-1234", work)
    assert opts == {"remote": str(work / "rclone-remote"), "vfs-cache-mode": "writes"}
    assert (work / "rclone-remote").is_dir()
    assert targets.peer_defaults("other", work) == {}
