"""What a person reads: the rich table, the comparison, and the HTML page with plots.

Plots are matplotlib PNGs, one per workload: for each figure a bar per target
showing its ratio to the floor (log scale; the line at 1 is the floor), so
targets compare side by side at a glance.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargohold.plugins.bench.results import Change, Result

if TYPE_CHECKING:
    from rich.console import Console


def human(value: float, unit: str) -> str:
    """Seconds as us/ms/s; throughputs with three significant digits."""
    if math.isnan(value):
        return "-"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.1f} us"
        if value < 1:
            return f"{value * 1e3:.2f} ms"
        return f"{value:.2f} s"
    return f"{value:,.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"


def ratio_text(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}x"


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    """target, workload, figure, value, floor, ratio, note: the one layout of every output."""
    rows = []
    for r in results:
        f = r.figure
        if f.error:
            rows.append([r.target, f.workload, f.name, "-", "-", "-", f"error: {f.error}"])
            continue
        notes = [f.floor_name]
        if "runner" in f.extra:
            notes.append(f"runner {f.extra['runner']}")
        if f.extra.get("ratio_tmpfs") is not None:
            notes.append(f"{f.extra['ratio_tmpfs']:.2f}x tmpfs")
        rows.append(
            [
                r.target,
                f.workload,
                f.name,
                human(f.value, f.unit),
                human(f.floor, f.unit),
                ratio_text(f.ratio),
                "; ".join(notes),
            ]
        )
    return rows


HEADERS = ["target", "workload", "figure", "value", "floor", "ratio", "floor is / notes"]


def print_table(console: Console, results: Sequence[Result], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header in HEADERS:
        right = header in ("value", "floor", "ratio")
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    rows = table_rows(results)
    for n, row in enumerate(rows):
        # a rule between (target, workload) groups
        last = n + 1 == len(rows) or rows[n + 1][:2] != row[:2]
        table.add_row(*row, end_section=last)
    console.print(table)


def markdown(results: Sequence[Result]) -> str:
    """The table as GitHub markdown (for docs: generated, never typed)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in table_rows(results):
        cells = [cell.replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def print_changes(console: Console, changes: Sequence[Change], fail_over: float | None) -> None:
    from rich.table import Table

    table = Table(
        title="change against --compare (ratio to floor; + is worse)", title_justify="left"
    )
    for header in ("case", "old ratio", "new ratio", "change", "old value", "new value"):
        table.add_column(header, justify="left" if header == "case" else "right")
    for c in changes:
        pct = c.percent
        text = "-" if pct is None else f"{pct:+.1f}%"
        if pct is not None and fail_over is not None and pct > fail_over:
            text = f"[bold red]{text}[/]"
        table.add_row(
            c.name,
            "-" if c.old_ratio is None else f"{c.old_ratio:.2f}x",
            "-" if c.new_ratio is None else f"{c.new_ratio:.2f}x",
            text,
            "-" if c.old_value is None else human(c.old_value, c.unit),
            "-" if c.new_value is None else human(c.new_value, c.unit),
        )
    console.print(table)


# -- the HTML page --------------------------------------------------------------


def _plot(workload: str, results: Sequence[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    measured = [r for r in results if not r.figure.error and not math.isnan(r.figure.ratio)]
    figures = list(dict.fromkeys(r.figure.name for r in measured))
    targets = list(dict.fromkeys(r.target for r in measured))
    ratio = {(r.target, r.figure.name): r.figure.ratio for r in measured}
    height = max(2.5, 0.45 * len(figures) * max(1, len(targets)) ** 0.5 + 1.2)
    fig, ax = plt.subplots(figsize=(8.5, height), dpi=100)
    bar = 0.8 / max(1, len(targets))
    for n, target in enumerate(targets):
        ys = [i + (n - (len(targets) - 1) / 2) * bar for i in range(len(figures))]
        xs = [ratio.get((target, name), math.nan) for name in figures]
        ax.barh(ys, xs, height=bar * 0.9, label=target)
    ax.set_yticks(range(len(figures)), figures)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("ratio to the floor measured in the same run (1 = floor; lower is better)")
    ax.set_title(f"{workload}")
    ax.grid(axis="x", which="both", alpha=0.3)
    if measured:
        ax.legend(loc="lower right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "nothing measured (see the table)", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(directory: Path, results: Sequence[Result], doc: dict[str, Any]) -> Path:
    """``index.html`` and one ``<workload>.png`` per workload in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    workloads = list(dict.fromkeys(r.figure.workload for r in results))
    sections = []
    for workload in workloads:
        mine = [r for r in results if r.figure.workload == workload]
        image = f"{workload}.png"
        _plot(workload, mine, directory / image)
        rows = "\n".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in table_rows(mine)
        )
        head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
        sections.append(
            f'<h2>{html.escape(workload)}</h2>\n<img src="{image}" alt="{workload} ratios">\n'
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>"
        )
    info = doc.get("machine_info", {})
    machine = html.escape(
        f"{info.get('system')} {info.get('release')} {info.get('machine')}, "
        f"{info.get('cpu', {}).get('count')} CPUs, Python {info.get('python_version')}, "
        f"fio: {info.get('fio') or 'absent (Python runner)'}, "
        f"work directory on {info.get('workdir_filesystem')}"
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>cargohold bench</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; font-size: 90%; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
td:nth-child(4), td:nth-child(5), td:nth-child(6) {{ text-align: right; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>cargohold bench</h1>
<p>{html.escape(str(doc.get("datetime", "")))}: {machine}.</p>
<p>Every figure is a ratio to its floor, measured in the same run: 1.0 is the floor,
2.0 twice its cost (for throughputs, half its speed). Higher is worse.</p>
{chr(10).join(sections)}
</body></html>
"""
    index = directory / "index.html"
    index.write_text(page)
    return index
