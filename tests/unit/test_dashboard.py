"""docs/grafana-dashboard.json against the metrics the daemon serves: every query names a series
that /metrics exports, and docs/METRICS.md explains every panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from embedkeeper.service.metrics import Metrics
from embedkeeper.store.report.backlog import Backlog
from embedkeeper.store.report.coverage import Coverage

DOCS = Path(__file__).resolve().parents[2] / "docs"


def served_names() -> set[str]:
    """The sample names /metrics shows once each metric has a value."""
    metrics = Metrics([("docs", "m")])
    metrics.record_batch(("docs", "m"), 0.5, ok=3, failed=1, tokens=42)
    metrics.record_pass(("docs", "m"), None)
    metrics.record_pass(("docs", "m"), "BackendUnavailable")
    metrics.record_coverage(Coverage("m", 10, 8, 1, 2, 0, 0, 0, source="docs"))
    metrics.record_backlog("docs", Backlog("m", 10, 8, 0, 0))
    text = metrics.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_every_query_names_a_served_metric_and_balances():
    served = served_names()
    assert "embedkeeper_tokens_total" in served
    assert "embedkeeper_backlog" in served
    for title, expr in queries():
        names = set(re.findall(r"\bembedkeeper_\w+", expr))
        assert names, title
        assert names <= served, (title, names - served)
        assert expr.count("(") == expr.count(")"), title
        assert 'source=~"$source", model=~"$model"' in expr, title


def test_metrics_md_explains_every_panel_and_its_query():
    text = (DOCS / "METRICS.md").read_text()
    for title, expr in queries():
        assert f"**{title}**" in text or f"**{title}** " in text, title
        core = re.sub(r"\s+", " ", expr)
        assert core in re.sub(r"\s+", " ", text), (title, expr)
