"""docs/alerts.yml: valid for Prometheus, every alert proven to fire, only real metrics used.

Runs Debian's promtool (apt package ``prometheus``): ``check rules`` on the rules
and ``test rules`` on tests/data/alerts_test.yml, whose synthetic series make each
alert fire (with the labels and annotations a pager shows) and a near miss not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consrv.fleet.metrics import FleetCollector
from consrv.metrics import metrics_registry
from tests.fleet.offline import offline_gateway
from tests.test_metrics import busy_collectors

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "data" / "alerts_test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path is not None, "promtool missing: apt-get install prometheus"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_each_alert_fires_on_its_synthetic_series() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_test() -> None:
    fired = {
        case["alertname"]
        for test in load(RULE_TESTS)["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "ConsrvIocDown",
        "ConsrvIocCrashLoop",
        "ConsrvConsoleSilent",
        "ConsrvUpstreamDisconnected",
        "ConsrvConsoleLogWriteErrors",
        "ConsrvSshAuthFailureBurst",
    } <= names


def test_every_alert_waits_has_a_severity_and_says_what_to_do() -> None:
    for rule in alert_rules():
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_the_rules_use_only_metrics_consrv_exports() -> None:
    collectors = [*busy_collectors(), FleetCollector(offline_gateway())]
    text = generate_latest(metrics_registry(*collectors)).decode()
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    used = {
        name
        for rule in alert_rules()
        for name in re.findall(r"\bconsrv_[a-z_]+", rule["expr"] + str(rule["annotations"]))
    }
    assert used
    assert used <= exported, used - exported
