"""Plots of bench.fleetscale's rows: each cost against the number of peers (PNG, gnuplot).

``python -m bench.fleetplot ROWS.json OUT.png``: four panels (gateway memory, idle CPU,
directory rebuilt after a restart, keystroke p50/p99 through the gateway and direct),
each with its target as a dashed line. Debian's ``gnuplot-nox`` draws it (bench/run
installs it): no plotting library in the lock for one picture.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PANELS = [
    # (title, y label, [(key, legend)], target)
    ("gateway memory", "RSS (MB)", [("rss_mb", "gateway RSS")], 150.0),
    ("idle CPU", "% of one core", [("idle_cpu_pct", "keep-alives only")], 1.0),
    ("gateway restarted", "s until every peer is back", [("rebuilt_s", "directory whole")], 5.0),
    (
        "keystroke round trip",
        "ms",
        [("key_via_p50", "p50 via gateway"), ("key_direct_p50", "p50 direct"),
         ("key_via_p99", "p99 via gateway"), ("key_churn_p99", "p99 via, 100 changes/s")],
        None,
    ),
]  # fmt: skip


def script(rows: list[dict[str, Any]], data: Path, out: Path) -> str:
    columns = sorted({key for _, _, series, _ in PANELS for key, _ in series})
    with data.open("w") as f:
        for row in rows:
            f.write(" ".join([str(row["peers"]), *(str(row[c]) for c in columns)]) + "\n")
    lines = [
        "set terminal pngcairo size 1200,800 font 'sans,10'",
        f"set output '{out}'",
        "set multiplot layout 2,2",
        "set key top left",
        "set xlabel 'peers'",
        "set grid",
        "set yrange [0:*]",
        "set offsets 0, 0, graph 0.1, 0",
    ]
    for title, ylabel, series, target in PANELS:
        plots = [
            f"'{data}' using 1:{columns.index(key) + 2} with linespoints lw 2 title '{legend}'"
            for key, legend in series
        ]
        if target is not None:
            plots.append(f"{target} with lines dt 2 lc rgb 'red' title 'target'")
        lines += [f"set title '{title}'", f"set ylabel '{ylabel}'", "plot " + ", ".join(plots)]
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m bench.fleetplot ROWS.json OUT.png", file=sys.stderr)
        return 2
    rows = json.loads(Path(args[0]).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        text = script(rows, Path(tmp) / "rows.dat", Path(args[1]).resolve())
        subprocess.run(["gnuplot"], input=text, text=True, check=True)  # noqa: S607
    return 0


if __name__ == "__main__":
    sys.exit(main())
