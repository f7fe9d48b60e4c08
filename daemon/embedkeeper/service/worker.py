"""What the daemon does on each tick: a pass per model, a content-hash sweep when one is due, and
the heartbeat and metrics that show it is making progress.

Each pass is logged when it starts (`pass_start`) and by how it ended: `pass_done`,
`pass_interrupted` (a stop cut it short; its runs row says `interrupted`) or `pass_failed`.
A long pass logs `progress` at least every 10 s in between, so a journal never goes quiet
while the daemon works through a backlog."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from functools import partial

from embedkeeper.app import App
from embedkeeper.errors import EmbedkeeperError
from embedkeeper.logs import event
from embedkeeper.records import RunStats
from embedkeeper.service.metrics import Metrics
from embedkeeper.service.progress import Progress
from embedkeeper.service.upkeep import prune_history_when_due
from embedkeeper.store.db import connect
from embedkeeper.store.index.vector_index import restore_quietly
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.state import sync_state
from embedkeeper.sync.passes import PassContext, run_pass
from embedkeeper.sync.plan import PassOptions

log = logging.getLogger(__name__)


class Worker:
    """What one scheduled tick does: a pass per model, and a content-hash sweep when one is due."""

    def __init__(self, app: App, stop: threading.Event, metrics: Metrics | None = None) -> None:
        self.app = app
        self.stop = stop
        self.metrics = metrics
        self.busy = False
        self.heartbeat = time.monotonic()
        self.pair = ("", "")  # (source, model) of the pass in progress, for metrics
        self.last_counts = RunStats()  # the pass's totals at its last batch: totals into deltas
        self.passes_failed = 0
        self.runs_pruned_at: float | None = None

    def tick(self) -> None:
        self.restore_indexes()
        self.runs_pruned_at = prune_history_when_due(self.app, self.runs_pruned_at)
        self.busy, self.heartbeat = True, time.monotonic()
        try:
            for pair in self.app.pairs.values():
                if self.stop.is_set():
                    return
                self._pass(pair)
        finally:
            self.busy, self.heartbeat = False, time.monotonic()

    def _pass(self, pair: Pair) -> None:
        config = self.app.config
        name = config.pair_label(pair.source, pair.model)  # the model's name, with one source
        plans = [PassOptions.scheduled(pair.source)]
        if self._sweep_due(pair):
            plans.append(PassOptions.sweep())
        for options in plans:
            if self.stop.is_set():
                return
            self.pair, self.last_counts = (pair.source_name, pair.model_name), RunStats()
            self.heartbeat = time.monotonic()
            event(log, logging.INFO, "pass_start", model=name, trigger=options.trigger)
            progress = Progress(name, None, bar=False)
            try:
                result = run_pass(
                    PassContext(
                        self.app,
                        pair,
                        self.app.lazy_backend(pair.model),
                        options,
                        self.stop,
                        partial(self._beat, progress=progress),
                        progress.on_slice,
                    )
                )
            except EmbedkeeperError as exc:
                self.passes_failed += 1
                if self.metrics is not None:
                    self.metrics.record_pass(self.pair, type(exc).__name__)
                event(
                    log,
                    logging.ERROR,
                    "pass_failed",
                    model=name,
                    trigger=options.trigger,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                return
            finally:
                progress.close()
            if self.metrics is not None:
                self.metrics.record_pass(self.pair, None)
            s = result.stats
            event(
                log,
                logging.INFO,
                "pass_interrupted" if result.status == "interrupted" else "pass_done",
                model=name,
                trigger=options.trigger,
                ok=s.ok,
                failed=s.failed,
                skipped=s.skipped,
                deleted=result.deleted,
                docs_per_s=round(s.docs_per_s, 1),
                elapsed_s=round(s.elapsed_s, 2),
                tokens=s.tokens,
                chunks=s.chunks,
                reused_chunks=s.reused_chunks,
                reused_tokens=s.reused_tokens,
            )

    def _sweep_due(self, pair: Pair) -> bool:
        """The last sweep (or backfill) of any instance counts: N instances do not sweep N
        times, and a restart does not sweep again."""
        try:
            with connect(self.app.url, timeout_s=self.app.config.connect_timeout_s) as conn:
                swept_at = sync_state.load(conn, pair).swept_at
                if swept_at is None:
                    return True
                row = conn.execute("SELECT extract(epoch FROM now() - %s)", (swept_at,))
                age_s = float(next(iter(row))[0])
        except EmbedkeeperError:
            return False  # the pass that follows reports the database's state
        return age_s >= self.app.config.schedule.sweep_interval_s

    def _beat(self, stats: RunStats, *, progress: Progress) -> None:
        progress.on_batch(stats)
        now = time.monotonic()
        if self.metrics is not None:
            last = self.last_counts
            self.metrics.record_batch(
                self.pair,
                now - self.heartbeat,
                stats.ok - last.ok,
                stats.failed - last.failed,
                stats.tokens - last.tokens,
                chunks=stats.chunks - last.chunks,
                reused_chunks=stats.reused_chunks - last.reused_chunks,
                reused_tokens=stats.reused_tokens - last.reused_tokens,
            )
        self.last_counts, self.heartbeat = replace(stats), now

    def restore_indexes(self) -> None:
        """Rebuild vector indexes that a `backfill --defer-index` dropped and never rebuilt (it
        died). Outside `busy`: a rebuild can take longer than the watchdog allows a batch."""
        try:
            with connect(self.app.url, timeout_s=self.app.config.connect_timeout_s) as conn:
                for pair in self.app.pairs.values():
                    if not self.app.is_made(conn, pair):
                        continue  # no tables, no index to restore: the pass makes them
                    restore_quietly(conn, self.app.index_target(conn, pair))
        except EmbedkeeperError as exc:
            event(
                log,
                logging.WARNING,
                "index_restore_failed",
                error=type(exc).__name__,
                detail=str(exc),
            )

    def refresh_coverage(self) -> None:
        """Coverage gauges, on their own cadence: the query reads the whole source."""
        if self.metrics is None:
            return
        try:
            with connect(self.app.url, timeout_s=self.app.config.connect_timeout_s) as conn:
                for pair in self.app.pairs.values():
                    self.metrics.record_coverage(self.app.coverage(conn, pair))
        except EmbedkeeperError as exc:
            event(
                log, logging.WARNING, "coverage_failed", error=type(exc).__name__, detail=str(exc)
            )

    def healthy(self, within_s: float) -> bool:
        return not self.busy or time.monotonic() - self.heartbeat < within_s
