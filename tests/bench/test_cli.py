"""``cargohold bench`` from the command line: flags, table, JSON layout, report, time limit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import InvalidArgument
from cargohold.plugins.bench.cli import parse_opts

from .conftest import bench, leftovers


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    no_target = bench(state=state)
    assert no_target.returncode == 2 and "--driver" in no_target.stderr
    lonely = bench("-d", "local", "--fail-over", "5", state=state)
    assert lonely.returncode == 2 and "--fail-over needs --compare" in lonely.stderr
    twice = bench("-d", "local", "-d", "local", state=state)
    assert twice.returncode == 2 and "named twice" in twice.stderr
    unknown = bench("-d", "local", "-w", "nosuch", state=state)
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr


def test_bad_input_is_one_line_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    bad_opt = bench("-d", "local", "-o", "novalue", state=state)
    assert bad_opt.returncode == 1
    assert bad_opt.stderr.strip() == "Error: -o 'novalue': write [TARGET:]KEY=VALUE"
    missing = bench("-d", "nosuchdriver", "-w", "lifecycle", state=state)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "no Docker volume plugin named 'nosuchdriver'" in missing.stderr
    not_json = tmp_path / "old.json"
    not_json.write_text("{")
    refused = bench("-d", "local", "--compare", str(not_json), state=state)
    assert refused.returncode == 1 and "cannot read it as JSON" in refused.stderr


def test_options_per_target() -> None:
    assert parse_opts(("size=1g", "rclone:remote=/x", "served:local:type=tmpfs")) == {
        "*": {"size": "1g"},
        "rclone": {"remote": "/x"},
        "served:local": {"type": "tmpfs"},
    }
    with pytest.raises(InvalidArgument):
        parse_opts(("rclone:=x",))


def _rows(stdout: str) -> list[list[str]]:
    """The table's body rows, as cells."""
    rows = []
    for line in stdout.splitlines():
        bar = line[:1]
        if bar in ("│", "┃"):  # body rows, the header row
            rows.append([cell.strip() for cell in line.strip(bar).split(bar)])
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run: local and served:local, lifecycle, concurrent and protocol, JSON and report."""
    tmp = tmp_path_factory.mktemp("bench")
    # other runs on this machine may have sockets of their own there right now
    sockets_before = set(Path("/tmp").glob("chb-*/chbench-*.sock"))
    args = ["-d", "local", "-d", "served:local", "-w", "lifecycle", "-w", "protocol"]
    args += ["-w", "concurrent", "--rounds", "4", "--clients", "2", "--time-limit", "60"]
    args += ["--json", str(tmp / "out.json"), "--report", str(tmp / "report")]
    args += ["--work-dir", str(tmp / "work"), "--markdown", str(tmp / "table.md")]
    ran = bench(*args, state=tmp / "state")
    assert ran.returncode == 0, ran.stderr
    doc = json.loads((tmp / "out.json").read_text())
    return {"ran": ran, "tmp": tmp, "doc": doc, "sockets_before": sockets_before}


@pytest.mark.root
def test_table_has_a_row_per_target_workload_figure(run: dict[str, Any]) -> None:
    rows = _rows(run["ran"].stdout)
    header, body = rows[0], rows[1:]
    assert header == ["target", "workload", "figure", "value", "floor", "ratio", "floor is / notes"]
    seen = {(r[0], r[1], r[2]) for r in body}
    for target in ("local", "served:local"):
        for figure in ("create p50", "mount p99", "unmount p50", "remove p99", "cycle x1 p50"):
            assert (target, "lifecycle", figure) in seen
        assert (target, "concurrent", "cycle x2 p50") in seen
    # only a target over the protocol has the protocol workload
    assert ("served:local", "protocol", "Get p50") in seen
    assert not any(r[0] == "local" and r[1] == "protocol" for r in body)
    for row in body:
        assert re.fullmatch(r"\d+\.\d\dx", row[5]), row  # every figure a ratio
    assert "error" not in run["ran"].stdout


@pytest.mark.root
def test_json_is_in_pytest_benchmark_layout(run: dict[str, Any]) -> None:
    doc = run["doc"]
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    assert doc["machine_info"]["cpu"]["count"] >= 1
    assert doc["machine_info"]["python_version"]
    names = [b["name"] for b in doc["benchmarks"]]
    assert "served:local/protocol/Get p50" in names
    assert len(names) == len(set(names))
    for entry in doc["benchmarks"]:
        stats = entry["stats"]
        assert {"min", "median", "max", "mean", "stddev", "rounds", "iterations"} <= set(stats)
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert stats["rounds"] >= 3
        info = entry["extra_info"]
        assert info["floor"] > 0 and info["ratio"] > 0 and info["floor_name"]
        assert info["unit"] == "s" and info["better"] == "lower"
        expected = info["value"] / info["floor"]
        assert info["ratio"] == pytest.approx(expected, rel=1e-3)  # both rounded
        assert entry["group"] == info["workload"]
    assert doc["settings"]["time_limit"] == 60


@pytest.mark.root
def test_report_has_a_plot_per_workload(run: dict[str, Any]) -> None:
    report = run["tmp"] / "report"
    page = (report / "index.html").read_text()
    for workload in ("lifecycle", "concurrent", "protocol"):
        image = report / f"{workload}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'<img src="{workload}.png"' in page
    assert "served:local" in page


@pytest.mark.root
def test_markdown_table_is_the_same_table(run: dict[str, Any]) -> None:
    lines = (run["tmp"] / "table.md").read_text().splitlines()
    assert lines[0] == "| target | workload | figure | value | floor | ratio | floor is / notes |"
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert body == _rows(run["ran"].stdout)[1:]


@pytest.mark.root
def test_run_leaves_nothing_behind(run: dict[str, Any]) -> None:
    work = run["tmp"] / "work"
    assert leftovers(work) == []
    assert list(work.iterdir()) == []  # the run's scratch directory is gone
    assert set(Path("/tmp").glob("chb-*/chbench-*.sock")) <= run["sockets_before"]


@pytest.mark.root
def test_compare_exits_non_zero_past_fail_over(run: dict[str, Any], tmp_path: Path) -> None:
    doc = run["doc"]
    better = json.loads(json.dumps(doc))  # an earlier run 1000x closer to every floor
    for entry in better["benchmarks"]:
        entry["extra_info"]["ratio"] /= 1000
    worse = json.loads(json.dumps(doc))  # an earlier run 1000x further from them
    for entry in worse["benchmarks"]:
        entry["extra_info"]["ratio"] *= 1000
    (tmp_path / "better.json").write_text(json.dumps(better))
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    args = ["-d", "local", "-w", "lifecycle", "--rounds", "3", "--time-limit", "30"]

    regressed = bench(*args, "--compare", str(tmp_path / "better.json"), "--fail-over", "50",
                      state=tmp_path / "s1")  # fmt: skip
    assert regressed.returncode == 1, regressed.stderr
    assert "ratio worse by more than 50%" in regressed.stderr
    assert "local/lifecycle/create p50" in regressed.stderr
    assert "change against --compare" in regressed.stdout

    improved = bench(*args, "--compare", str(tmp_path / "worse.json"), "--fail-over", "50",
                     state=tmp_path / "s2")  # fmt: skip
    assert improved.returncode == 0, improved.stderr
    assert re.search(r"local/lifecycle/create p50 .* -\d\d\.\d%", improved.stdout)

    shown_only = bench(*args, "--compare", str(tmp_path / "better.json"), state=tmp_path / "s3")
    assert shown_only.returncode == 0  # without --fail-over a change is shown, never fatal


@pytest.mark.root
def test_time_limit_bounds_the_whole_run(tmp_path: Path) -> None:
    args = ["-d", "local", "-w", "lifecycle", "-w", "data", "-w", "concurrent"]
    args += ["--rounds", "100000", "--size", "8", "--time-limit", "8"]
    ran = bench(*args, "--json", str(tmp_path / "out.json"), state=tmp_path / "state")
    assert ran.returncode == 0, ran.stderr
    # start-up, the served no-op child and the report are outside the cases' share
    assert ran.seconds < 8 + 10, ran.seconds
    doc = json.loads((tmp_path / "out.json").read_text())
    rounds = {b["name"]: b["stats"]["rounds"] for b in doc["benchmarks"]}
    assert 3 <= rounds["local/lifecycle/create p50"] < 100000


@pytest.mark.root
def test_python_runner_is_named_in_the_report(tmp_path: Path) -> None:
    args = ["-d", "local", "-w", "data", "--runner", "python", "--size", "4"]
    ran = bench(*args, "--time-limit", "20", "--json", str(tmp_path / "o.json"), state=tmp_path)
    assert ran.returncode == 0, ran.stderr
    doc = json.loads((tmp_path / "o.json").read_text())
    runners = {b["extra_info"]["runner"] for b in doc["benchmarks"]}
    assert runners == {"python"}
    assert "runner python" in ran.stdout
    assert all(b["extra_info"]["tmpfs"] > 0 for b in doc["benchmarks"])
