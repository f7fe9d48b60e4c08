"""One pass for one model: plan it (sync/plan.py), drain what is pending, record the run.

This is where transient failures are absorbed: a lost database connection or an unavailable
backend ends the attempt (claims die with the session or are released, no document is charged),
we back off with jitter and try again, up to [retry] transient_attempts; then the error goes up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from threading import Event
from typing import Any

import psycopg

from embedkeeper.backends import Backend
from embedkeeper.config import Config, ModelConfig
from embedkeeper.errors import BackendUnavailable, DatabaseUnavailable
from embedkeeper.logs import event, set_log_fields
from embedkeeper.records import RunStats
from embedkeeper.retry import transient_delay_s
from embedkeeper.store import sync_state
from embedkeeper.store.db import connect, mapped_errors
from embedkeeper.store.pg_store import PgStore
from embedkeeper.store.queries import SourceQueries
from embedkeeper.store.runs import adopt_run, finish_run, start_run
from embedkeeper.sync.background_prune import BackgroundPrune
from embedkeeper.sync.pipeline import drain
from embedkeeper.sync.plan import PassOptions, PassPlan, finish_plan, plan_pass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PassResult:
    stats: RunStats
    deleted: int


def run_pass(
    url: str,
    config: Config,
    queries: SourceQueries,
    model: ModelConfig,
    backend: Backend,
    options: PassOptions,
    stop: Event,
    on_batch: Callable[[RunStats], None] | None = None,
) -> PassResult:
    set_log_fields(run=None, batch=None)
    total = RunStats()
    deleted = 0
    attempt = 0
    run_id: int | None = None
    ours: set[int] = set()  # in-flight records of ours left by a lost session
    store: PgStore | None = None
    plan: PassPlan | None = None
    background: BackgroundPrune | None = None
    held_by_peers: list[datetime | None] = []
    while True:
        try:
            with connect(
                url,
                timeout_s=config.connect_timeout_s,
                lease_s=config.claim_lease_s,
                async_commit=True,
            ) as conn:
                if run_id is None:
                    run_id, plan, background = _start(url, conn, config, queries, model, options)
                    deleted = plan.deleted
                else:
                    with mapped_errors("resuming a run"):
                        adopt_run(conn, run_id)
                assert plan is not None
                store = _open_store(url, conn, config, queries, model, options, backend, ours, plan)
                ours = set()

                def progress(stats: RunStats, before: RunStats = total) -> None:
                    if on_batch is not None:
                        on_batch(_merged(before, stats))

                remaining = None if options.limit is None else options.limit - _done(total)
                try:
                    stats = drain(
                        store,
                        backend,
                        claim_size=model.claim_size,
                        dimensions=backend.dimensions,  # checked against the config at start
                        stop=stop,
                        on_batch=progress,
                        limit=remaining,
                        write_behind=True,
                    )
                finally:
                    store.close()
                total = _merged(total, stats)
                held_by_peers += store.held_by_peers
                more, plan = _settle(background, conn, plan, model.name)
                background, deleted = None, deleted + more
                if stats.drained and not stop.is_set():
                    finish_plan(conn, queries, model.name, plan, held_by_peers, options)
                status = "interrupted" if stop.is_set() else "ok"
                with mapped_errors("finishing the run"):
                    finish_run(conn, run_id, total, status=status, deleted=deleted)
            return PassResult(total, deleted)
        except (DatabaseUnavailable, BackendUnavailable) as exc:
            more, _ = _wait(background)
            background, deleted = None, deleted + more
            if store is not None:
                ours |= store.open_tokens
                held_by_peers += store.held_by_peers
                store.held_by_peers = []
            attempt += 1
            if attempt >= config.retry.transient_attempts or stop.is_set():
                _record_failed_run(url, config, run_id, total, deleted, exc)
                raise
            delay = _backoff_s(exc, attempt, config)
            event(
                log,
                logging.WARNING,
                "transient_failure",
                model=model.name,
                error=type(exc).__name__,
                detail=str(exc),
                attempt=attempt,
                retry_in_s=delay,
            )
            if stop.wait(delay):
                _record_failed_run(url, config, run_id, total, deleted, exc)
                raise


def _start(
    url: str,
    conn: psycopg.Connection[Any],
    config: Config,
    queries: SourceQueries,
    model: ModelConfig,
    options: PassOptions,
) -> tuple[int, PassPlan, BackgroundPrune | None]:
    """The run's row, the plan, and the prune after deletes started beside the pass."""
    with mapped_errors("starting a run"):
        run_id = start_run(conn, model.name, options.trigger)
    set_log_fields(run=run_id)
    plan = plan_pass(conn, queries, model.name, options)
    background = (
        BackgroundPrune(url, config.connect_timeout_s, queries, model.name, plan)
        if plan.prune_later
        else None
    )
    return run_id, plan, background


def _settle(
    background: BackgroundPrune | None,
    conn: psycopg.Connection[Any],
    plan: PassPlan,
    model: str,
) -> tuple[int, PassPlan]:
    """Wait for the background prune: the documents it deleted, and the plan with the sync state
    re-read if it recorded its fingerprint (the watermark's compare-and-set then expects it)."""
    deleted, saved = _wait(background)
    if saved:
        with mapped_errors("reading the sync state"):
            plan = replace(plan, seen=sync_state.load(conn, model))
    return deleted, plan


def _wait(background: BackgroundPrune | None) -> tuple[int, bool]:
    return (0, False) if background is None else background.join()


def _open_store(
    url: str,
    conn: psycopg.Connection[Any],
    config: Config,
    queries: SourceQueries,
    model: ModelConfig,
    options: PassOptions,
    backend: Backend,
    ours: set[int],
    plan: PassPlan,
) -> PgStore:
    """The pass's store on a (new) session: our own in-flight records from a lost session are
    dropped uncharged, then the batches of processes that died are charged. Vectors are written
    on a second session, opened on the first write, beside the claiming one."""

    def write_conn() -> psycopg.Connection[Any]:
        return connect(
            url,
            timeout_s=config.connect_timeout_s,
            lease_s=config.claim_lease_s,
            async_commit=True,
        )

    store = PgStore(
        conn,
        queries,
        model=model.name,
        retry=config.retry,
        stale_by=options.stale_by,
        ignore_retry_delay=options.ignore_retry_delay,
        prefix_chars=backend.max_chars,
        phases=plan.phases,
        write_conn=write_conn,
    )
    if ours:
        store.forget(ours)
    if crashed := store.recover_crashed():
        event(log, logging.WARNING, "crashed_batch_charged", model=model.name, documents=crashed)
    return store


def _backoff_s(exc: Exception, attempt: int, config: Config) -> float:
    delay = transient_delay_s(attempt, config.retry.transient_backoff_max_s)
    if isinstance(exc, BackendUnavailable) and exc.retry_after_s:
        delay = max(delay, exc.retry_after_s)  # until the circuit breaker lets a probe in
    return delay


def _done(stats: RunStats) -> int:
    return stats.ok + stats.failed + stats.skipped


def _merged(a: RunStats, b: RunStats) -> RunStats:
    return RunStats(
        ok=a.ok + b.ok,
        failed=a.failed + b.failed,
        skipped=a.skipped + b.skipped,
        tokens=a.tokens + b.tokens,
        batches=a.batches + b.batches,
        drained=b.drained,
        started=a.started,
    )


def _record_failed_run(
    url: str, config: Config, run_id: int | None, stats: RunStats, deleted: int, exc: Exception
) -> None:
    """Best effort: the database may be the thing that is down."""
    if run_id is None:
        return
    try:
        with connect(url, timeout_s=config.connect_timeout_s) as conn:
            finish_run(conn, run_id, stats, status="failed", deleted=deleted, error=str(exc)[:500])
    except Exception as err:  # the original error is the one worth raising
        event(log, logging.DEBUG, "run_not_recorded", run=run_id, error=type(err).__name__)
