"""The bench's tables with ``--against REV``: consrv@REV's column beside consrv's, and
consrv ÷ consrv@REV taken within each run (bench/report.py, bench/spread.py)."""

from __future__ import annotations

from bench import report, spread
from bench.latency import Latency
from bench.logins import Logins

OLD = report.AGAINST + "187440d"


def _results(consrv_p50: float, old_p50: float) -> report.Results:
    results = report.Results(
        mode="quick", command="bench/run --against 187440d", load_viewers=20,
        flood_rate=1_000_000, burst_bytes=5_000_000, burst_reps=1, idle_window=5.0,
    )  # fmt: skip
    for label, p50 in ((report.CONSRV, consrv_p50), (OLD, old_p50), (report.FLOOR, 0.25)):
        results.servers[label] = report.ServerResults(latency_idle=Latency(200, p50, 2 * p50))
    results.servers[report.CONSRV].logins = Logins(count=20, per_second=20.0, cpu_ms_per_login=4.0)
    return results


def _row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_revision_gets_a_column_beside_consrv_and_a_ratio_first() -> None:
    text = report.table(_results(0.5, 0.4))
    head = _row(text, "figure")
    assert head[:4] == ["figure", report.CONSRV, OLD, report.SSHD]
    assert head[6:] == [f"consrv ÷ {OLD}", "consrv ÷ sshd+socat", "consrv ÷ conserver"]
    keys = _row(text, "keystroke p50, idle (ms)")
    assert keys[1:3] == ["0.500", "0.400"]
    assert keys[6:] == ["1.25", "—", "—"]
    assert "consrv@187440d: consrv's package from revision 187440d" in report.markdown(
        _results(0.5, 0.4)
    )


def test_without_a_revision_the_table_is_as_before() -> None:
    results = _results(0.5, 0.4)
    del results.servers[OLD]
    head = _row(report.table(results), "figure")
    assert head == ["figure", *report.LABELS, "consrv ÷ sshd+socat", "consrv ÷ conserver"]


def test_spread_takes_the_ratio_to_the_revision_within_each_run() -> None:
    # run 1: 0.5 / 0.4 = 1.25; run 2: 0.3 / 0.6 = 0.5; run 3: 0.4 / 0.4 = 1.0
    runs = [_results(0.5, 0.4), _results(0.3, 0.6), _results(0.4, 0.4)]
    keys = _row(spread.table(runs), "keystroke p50, idle (ms)")
    assert keys[1] == "0.400 (0.300-0.500)"
    assert keys[2] == "0.400 (0.400-0.600)"
    assert keys[6] == "1.00 (0.50-1.25)"
