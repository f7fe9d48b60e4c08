"""The daemon's housekeeping beside the passes: the bounded history of `embedkeeper.runs`, and
the backlog gauge.

Both are cheap by construction, so they may run often: the prune deletes a range at the old end
of runs_finished_idx (never a scan of the whole history), and the backlog reads catalog estimates
and the model's own indexes (never a row of the source). A failure is logged and waits for the
next turn: neither is worth stopping a pass for.
"""

from __future__ import annotations

import logging
import time

from embedkeeper.app import App
from embedkeeper.errors import EmbedkeeperError
from embedkeeper.logs import event
from embedkeeper.service.metrics import Metrics
from embedkeeper.store.db import connect
from embedkeeper.store.report.backlog import measure_backlog
from embedkeeper.store.state.runs import prune_runs

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0  # runs accrue by the pass; an hour's worth is nothing to keep a while


def prune_history_when_due(app: App, pruned_at: float | None) -> float | None:
    """Prune runs older than `[runs] keep` on the first tick and then hourly; returns the
    monotonic time of the last prune that ran (unchanged when none was due or it failed)."""
    now = time.monotonic()
    if pruned_at is not None and now - pruned_at < PRUNE_EVERY_S:
        return pruned_at
    keep_s = app.config.runs.keep_s
    try:
        with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
            pruned = prune_runs(conn, keep_s)
    except EmbedkeeperError as exc:
        event(log, logging.WARNING, "runs_prune_failed", error=type(exc).__name__, detail=str(exc))
        return pruned_at
    if pruned:
        event(log, logging.INFO, "runs_pruned", runs=pruned, keep_s=round(keep_s))
    return now


def refresh_backlog(app: App, metrics: Metrics) -> None:
    """The backlog gauge of every model: the same estimate `embedkeeper stats` shows."""
    try:
        with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
            for pair in app.pairs.values():
                made = app.is_made(conn, pair)
                metrics.record_backlog(pair.source_name, measure_backlog(conn, pair, made=made))
    except EmbedkeeperError as exc:
        event(log, logging.WARNING, "backlog_failed", error=type(exc).__name__, detail=str(exc))
