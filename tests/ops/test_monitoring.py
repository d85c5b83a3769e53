"""docs/monitoring/: the alert rules are Prometheus rule groups, and every series the
rules and the dashboard name is one the keeper's /metrics exports (with the labels they
select on). Read from the files as shipped; /metrics served by the keeper's health server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from test_metrics import exercised

from keeper.ops.health import HealthServer, HealthState

MONITORING = Path(__file__).resolve().parents[2] / "docs" / "monitoring"
RULES = MONITORING / "keeper-alerts.yml"
DASHBOARD = MONITORING / "keeper-dashboard.json"
# Series Prometheus makes itself, not the keeper.
PROMETHEUS_OWN = {"up"}
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"")
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# PromQL words and functions that the selector pattern would also match.
_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "sum", "min", "max", "avg", "count", "rate", "increase", "irate", "delta", "time",
    "absent", "histogram_quantile", "le", "bool", "offset",
}


def _rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return loaded


def _alert_exprs() -> list[str]:
    return [rule["expr"] for group in _rules()["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


async def _exported() -> dict[str, set[str]]:
    """Every family the keeper's /metrics serves, with the label names of its samples."""
    async with (
        HealthServer(HealthState(), exercised(), port=0) as server,
        httpx.AsyncClient() as http,
    ):
        reply = await http.get(f"http://127.0.0.1:{server.port}/metrics")
    assert reply.status_code == 200
    families: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(reply.text):
        labels = {name for sample in family.samples for name in sample.labels}
        for name in {family.name, *(s.name for s in family.samples)}:
            families.setdefault(name, set()).update(labels)
    return families


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names it selects on) of every series in a PromQL expression."""
    without_strings = re.sub(r"\"[^\"]*\"", '""', expr)
    without_strings = re.sub(  # label lists of aggregations and vector matching
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_strings
    )
    found = []
    for match in _SELECTOR.finditer(without_strings):
        name, braces = match.group(1), match.group(2)
        following = without_strings[match.end() :].lstrip()
        if name in _PROMQL_WORDS or following.startswith("("):
            continue  # a keyword, an aggregation's "by (…)", or a function call
        if not (name.startswith("keeper_") or name in PROMETHEUS_OWN):
            if name.replace(".", "").isdigit() or name[0].isdigit():
                continue
            raise AssertionError(f"{name!r} in {expr!r}: not a series the keeper exports")
        labels = set() if braces is None else {m.group(1) for m in _LABEL.finditer(braces)}
        found.append((name, labels))
    return found


def test_the_rules_file_is_prometheus_rule_groups() -> None:
    rules = _rules()
    assert set(rules) == {"groups"}
    names: list[str] = []
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.keys()
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations",
                                 "keep_firing_for"}, rule
            assert isinstance(rule["alert"], str) and re.fullmatch(r"[A-Za-z_]\w*", rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert _DURATION.match(rule.get("for", "0s")), rule["for"]
            for section in ("labels", "annotations"):
                assert all(
                    isinstance(k, str) and isinstance(v, str) for k, v in rule[section].items()
                ), rule[section]
            assert {"summary", "description"} <= set(rule["annotations"])
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            for opening, closing in ("()", "[]", "{}"):
                assert rule["expr"].count(opening) == rule["expr"].count(closing), rule["expr"]
            names.append(rule["alert"])
    assert len(names) == len(set(names)), names


def test_the_rules_cover_what_an_operator_must_hear_about() -> None:
    alerts = {rule["alert"] for group in _rules()["groups"] for rule in group["rules"]}
    assert alerts == {
        "KeeperDown",
        "KeeperStreamStalled",
        "KeeperStreamLagging",
        "KeeperJobParked",
        "KeeperJobFailing",
        "KeeperFundsLow",
        "KeeperFundsInsufficient",
        "KeeperProverUnavailable",
        "KeeperAtlanticOutOfCredit",
        "KeeperHeldByGovernance",
        "KeeperVerificationCostHigh",
    }


def test_the_dashboard_shows_what_the_issue_asks() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = " | ".join(panel["title"] for panel in board["panels"])
    for wanted in ("Executions", "Due → executed", "Cost per allocation by prover", "Funds",
                   "Stream lag"):
        assert wanted in titles, titles
    assert [p["id"] for p in board["panels"]] == sorted({p["id"] for p in board["panels"]})
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"


@pytest.mark.parametrize(
    "expr", [*_alert_exprs(), *_dashboard_exprs()], ids=lambda e: e[:60]
)
async def test_every_series_named_is_exported_by_the_keeper(expr: str) -> None:
    exported = await _exported()
    named = selectors(expr)
    assert named, expr
    for name, labels in named:
        if name in PROMETHEUS_OWN:
            continue
        base = name
        if base not in exported:
            base = next((name.removesuffix(s) for s in _HISTOGRAM_SUFFIXES
                         if name.endswith(s) and name.removesuffix(s) in exported), name)
        assert base in exported or name in exported, f"{name} is not in the keeper's /metrics"
        assert labels - {"le"} <= exported.get(name, exported.get(base, set())), (name, labels)


def test_the_selector_reader_finds_series_and_labels() -> None:
    """The check above is only as good as this reader of PromQL."""
    found = selectors(
        'histogram_quantile(0.5, sum by (le) (rate(keeper_x_bucket{a="1", b=~"y"}[6h]))) '
        "and up{job=\"k\"} == 0 or time() - keeper_y > 150 "
        "or sum by (le, prover) (keeper_z) > 1e18"
    )
    assert found == [
        ("keeper_x_bucket", {"a", "b"}), ("up", {"job"}), ("keeper_y", set()), ("keeper_z", set())
    ]
    with pytest.raises(AssertionError, match="not a series"):
        selectors("node_load1 > 3")
