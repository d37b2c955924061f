"""bench/webfleet.py runs, in a tiny configuration, so that it does not rot: two real peers
with their own web views, a real gateway, browser streams through it and on the hosts'
pages; every marked line typed into a console reaches every stream of that console."""

from __future__ import annotations

import pytest

from bench import webfleet


def test_the_browser_view_bench_runs_on_a_tiny_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--peers", "2", "--streams", "3", "--runs", "1", "--window", "1", "--printing", "1"]
    assert webfleet.main(argv) == 0
    table = capsys.readouterr().out
    rows = dict(
        (line.split(" | ")[0].strip("| "), line.split(" | ")[1].strip(" |"))
        for line in table.splitlines()
        if line.startswith("| ") and " | " in line
    )
    assert float(rows["gateway RSS, streams open (MB)"]) > 0
    assert "/" in rows["latency printing p50: gateway / host page (ms)"]
    # Each mark may take up to webfleet.LATE (5 s) on a loaded machine before it counts
    # as lost: none is lost, and no stream was closed by a server.
    assert rows["marks lost: gateway / host page"] == "0 / 0", table
    assert rows["streams the server closed"] == "0", table
