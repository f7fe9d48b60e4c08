"""`embedkeeper stats`: throughput per model, from `embedkeeper.runs` and the model's own tables.

It never reads the source's rows, so it answers at once on a table of any size: the pending
backlog is the estimate of store/report/backlog.py (`coverage` has the exact figure, at the price
of a
scan of the source). The text form is in stats_text.py; `--json` prints the same figures.

What an edit cost: `tokens` (also `tokens_embedded`) and `chunks_embedded` are what the model was
sent, `tokens_reused` and `chunks_reused` what the documents kept of their stored vectors.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from embedkeeper.app import open_app
from embedkeeper.commands.stats_text import format_stats
from embedkeeper.config import Config
from embedkeeper.service.progress import reused_percent
from embedkeeper.store.db import connect
from embedkeeper.store.report.backlog import Backlog, measure_backlog
from embedkeeper.store.state.run_stats import PassRate, RunFigures, run_figures

DEFAULT_SINCE_S = 86400.0


@dataclass(frozen=True, slots=True)
class ModelStats:
    runs: RunFigures
    backlog: Backlog
    source: str = ""

    @property
    def eta_s(self) -> float | None:
        """The backlog at the window's median rate; None when there is no rate to go by."""
        if self.backlog.pending == 0:
            return 0.0
        rate = self.runs.median_docs_per_s
        return round(self.backlog.pending / rate, 1) if rate else None

    def as_json(self) -> dict[str, Any]:
        runs, last = self.runs, self.runs.last
        return {
            "source": self.source,
            "model": runs.model,
            "since_s": runs.since_s,
            "passes": sum(runs.passes.values()),
            "passes_by_status": runs.passes,
            "docs_embedded": runs.docs_embedded,
            "docs_failed": runs.docs_failed,
            "tokens": runs.tokens,  # kept for existing readers: the same as tokens_embedded
            "tokens_embedded": runs.tokens,
            "tokens_reused": runs.tokens_reused,
            "tokens_reused_percent": reused_percent(runs.tokens_reused, runs.tokens),
            "chunks_embedded": runs.chunks_embedded,
            "chunks_reused": runs.chunks_reused,
            "docs_per_s": last.docs_per_s if last else None,
            "tokens_per_s": last.tokens_per_s if last else None,
            "last_pass_at": last.finished_at.isoformat() if last else None,
            "median_docs_per_s": _rounded(runs.median_docs_per_s),
            "median_tokens_per_s": _rounded(runs.median_tokens_per_s),
            "recent_docs_per_s": [p.docs_per_s for p in runs.recent],
            "recent_passes": [_pass_json(p) for p in runs.recent],
            "last_success_at": (runs.last_success_at.isoformat() if runs.last_success_at else None),
            "last_success_age_s": _rounded(runs.last_success_age_s),
            "pending": self.backlog.pending,
            "pending_is_estimate": not self.backlog.counted,
            "eta_s": self.eta_s,
            "in_review": self.backlog.in_review,
        }


def _pass_json(rate: PassRate) -> dict[str, Any]:
    """One recent pass that embedded: when, how many documents, and what it sent and kept."""
    return {
        "run_id": rate.run_id,
        "finished_at": rate.finished_at.isoformat(),
        "docs_embedded": rate.docs_ok,
        "docs_per_s": rate.docs_per_s,
        "tokens_embedded": rate.tokens,
        "tokens_reused": rate.tokens_reused,
        "chunks_embedded": rate.chunks_embedded,
        "chunks_reused": rate.chunks_reused,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def collect(
    config: Config, model: str | None, since_s: float, source: str | None = None
) -> list[ModelStats]:
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        pairs = app.chosen(source, model)
        return [
            ModelStats(
                run_figures(conn, pair.source_name, pair.model_name, since_s),
                measure_backlog(conn, pair, made=app.is_made(conn, pair)),
                pair.source_name,
            )
            for pair in pairs
        ]


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    rows = collect(config, args.model, args.since or DEFAULT_SINCE_S, args.source)
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
    else:
        print(format_stats(rows))
    return 0
