"""The Prometheus alerting rules shipped beside the dashboard are valid and do what their unit tests
(dashboards/alerts_test.yml) say: ``promtool`` from Debian's prometheus package (``make promtool``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from gatewayd.metrics import GatewayMetrics

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def _promtool(*arguments: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `make promtool` installs Debian's prometheus package"
    finished = subprocess.run(
        [promtool, *arguments], cwd=DASHBOARDS, capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, f"promtool {' '.join(arguments)}:\n{finished.stdout}{finished.stderr}"


def _rules_text() -> str:
    return (DASHBOARDS / "alerts.yml").read_text(encoding="utf-8")


def test_the_rules_are_valid() -> None:
    _promtool("check", "rules", "alerts.yml")


def test_the_rules_pass_their_unit_tests() -> None:
    _promtool("test", "rules", "alerts_test.yml")


def test_every_rule_has_a_severity_a_runbook_and_a_unit_test() -> None:
    """Read as text (each rule's block up to the next ``- alert:``): promtool has checked the YAML."""
    rules = re.split(r"^      - alert: ", _rules_text(), flags=re.M)[1:]
    tests = (DASHBOARDS / "alerts_test.yml").read_text(encoding="utf-8")
    tested = set(re.findall(r"alertname: (\w+)", tests))
    assert len(rules) >= 8
    for rule in rules:
        name = rule.split("\n", 1)[0]
        assert re.search(r"^          severity: (page|ticket)$", rule, re.M), name
        assert re.search(r"^          summary: ", rule, re.M), name
        assert "Runbook:" in rule, name
        assert name in tested, f"{name} has no unit test"


def test_the_rules_use_only_metrics_the_daemon_exports() -> None:
    exported = set(re.findall(r"^# TYPE (\S+) ", GatewayMetrics().render().decode(), re.MULTILINE))
    names = exported | {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    expressions = re.findall(r"^        expr: (.*?)\n        (?:for|labels):", _rules_text(), re.M | re.S)
    used = {name for expression in expressions for name in re.findall(r"gatewayd_[a-z_]+", expression)}
    assert len(expressions) >= 8 and used, expressions
    assert used <= names, used - names


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query of the Grafana dashboard, the ``$carrier`` variable set to all, checked by promtool as
    the expression of a recording rule."""
    dashboard = json.loads((DASHBOARDS / "gatewayd-grafana.json").read_text(encoding="utf-8"))
    queries = [
        (panel["id"], target["refId"], target["expr"].replace("$carrier", ".*"))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    assert len(queries) >= 20
    rules = "".join(
        f"      - record: dashboard:panel_{panel}_{ref}\n        expr: {json.dumps(expr)}\n"
        for panel, ref, expr in queries
    )
    (tmp_path / "dashboard.yml").write_text(f"groups:\n  - name: dashboard\n    rules:\n{rules}")
    _promtool("check", "rules", str(tmp_path / "dashboard.yml"))
