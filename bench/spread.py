"""Repeated runs in one report: each figure's median and its spread (lowest-highest).

Owns: the table over several `Results` of the same plan — per server the median
of the runs and the range, per ratio the median of the per-run ratios (each run
puts the servers side by side under the same load, so a ratio is taken inside a
run before it is summarised across runs).

Must not know: how anything was measured (that is `report`'s rows).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from bench import report

Cell = tuple[float, float, float]  # median, lowest, highest


def _summary(values: Sequence[float | None]) -> Cell | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return statistics.median(present), min(present), max(present)


def _ratio(mine: float | None, other: float | None) -> float | None:
    if mine is None or other is None or (mine == 0 and other == 0):
        return None
    return math.inf if other == 0 else mine / other


def _cell(summary: Cell | None, digits: int) -> str:
    if summary is None:
        return "—"
    median, low, high = ("∞" if math.isinf(value) else f"{value:,.{digits}f}" for value in summary)
    return median if low == high else f"{median} ({low}-{high})"


def table(runs: Sequence[report.Results]) -> str:
    """Like `report.table`, each cell the median over `runs` with its range."""
    columns = report.labels(label for results in runs for label in results.servers)
    others = report.compared(columns)
    lines = report.header(columns)
    for row in report.rows(runs[0]):
        per_run = [{label: row.get(r) for label, r in results.servers.items()} for results in runs]
        cells = [
            _cell(_summary([values.get(label) for values in per_run]), row.digits)
            for label in columns
        ]
        ratios = ["—"] * len(others)
        if row.ratio:
            ratios = [
                _cell(
                    _summary(
                        [_ratio(values.get(report.CONSRV), values.get(other)) for values in per_run]
                    ),
                    2,
                )
                for other in others
            ]
        lines.append("| " + " | ".join([row.label, *cells, *ratios]) + " |")
    return "\n".join(lines)


def markdown(runs: Sequence[report.Results]) -> str:
    """The report over several runs: the machine of each, the summary table."""
    first = runs[0]
    out = [f"Command: `{first.command}` ({first.mode} mode, {len(runs)} runs)", "", "Machine:", ""]
    out += [f"- {line}" for line in first.machine if "load average" not in line]
    out += [
        f"- run {i}: {line}"
        for i, results in enumerate(runs, 1)
        for line in results.machine
        if "load average" in line
    ]
    out.append("")
    baselines = [r.baseline.per_viewer_mb_s for r in runs if r.baseline is not None]
    if baselines:
        out.append(
            "Direct baseline (the bench's own socket client on procServ, no server):"
            f" {_cell(_summary(baselines), 1)} MB/s."
        )
        out.append("")
    out += [table(runs), ""]
    out.append(
        f"Each cell: the median of {len(runs)} runs (lowest-highest). Ratios: consrv's figure"
    )
    out.append("divided by the other's within each run, then the median of those (range):")
    out.append("below 1 is better for consrv, except on rows marked ↑. — = not applicable.")
    notes = [note for r in runs for note in r.notes]
    if notes:
        out += ["", "Notes from these runs:", ""]
        out += [f"- {note}" for note in dict.fromkeys(notes)]
    return "\n".join(out) + "\n"


def cell(values: Sequence[float | None], digits: int) -> str:
    """One figure over several runs: ``median (lowest-highest)``, or — if none."""
    return _cell(_summary(values), digits)
