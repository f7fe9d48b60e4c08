"""One pass for one model: plan it, drain what is pending, record the run.

This is where outages are absorbed: a Transient error (a lost database connection, an
unavailable backend) ends the attempt (claims die with the session or are released, no document
is charged), we back off with jitter and try again, up to [retry] transient_attempts; then the
error goes up. An outage the HTTP client already retried to that budget (`Transient.retried`) is
not tried again here: the tries of one outage never multiply. What the pass did before the
outage (its run row, its counts, its plan) carries over to the next attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from threading import Event
from typing import Any

import psycopg

from embedkeeper.app import App
from embedkeeper.backends import Backend, wait_after_outage
from embedkeeper.config import ModelConfig
from embedkeeper.errors import BackendRefused, BackendUnavailable, ConfigError, Transient
from embedkeeper.logs import event, set_log_fields
from embedkeeper.records import DocumentId, RunStats
from embedkeeper.retry import Backoff
from embedkeeper.store.db import connect, mapped_errors
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pair.tables import check_pair_chunking
from embedkeeper.store.pass_io.claims import ClaimRules
from embedkeeper.store.pass_io.pg_store import PgStore
from embedkeeper.store.state import sync_state
from embedkeeper.store.state.runs import adopt_run, finish_run, start_run
from embedkeeper.sync.background_prune import BackgroundPrune
from embedkeeper.sync.pipeline import drain
from embedkeeper.sync.plan import PassOptions
from embedkeeper.sync.prepare import PassPlan, finish, prepare

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PassContext:
    """What one pass works with, bound once: the app (database, config), the pair and its
    model's backend, how to look for work, when to stop, and who hears of each batch written
    and of each slice the model finishes (progress within a batch)."""

    app: App
    pair: Pair
    backend: Backend
    options: PassOptions
    stop: Event
    on_batch: Callable[[RunStats], None] | None = None
    on_slice: Callable[[int], None] | None = None

    @property
    def model(self) -> ModelConfig:
        return self.pair.model

    def connect(self) -> psycopg.Connection[Any]:
        """A session of the pass: its claims die with it, and idle for claim_lease it is ended
        (a stalled worker's late write then fails). Commits need not wait for the disk: a lost
        vector only leaves its document pending."""
        config = self.app.config
        return connect(
            self.app.url,
            timeout_s=config.connect_timeout_s,
            lease_s=config.claim_lease_s,
            async_commit=True,
        )


@dataclass(slots=True)
class PassResult:
    stats: RunStats
    deleted: int
    status: str = "ok"  # as its runs row: "ok", or "interrupted" when `stop` cut it short
    held: tuple[DocumentId, ...] = ()  # pending documents a peer held when the pass met them


def run_pass(ctx: PassContext) -> PassResult:
    return _Pass(ctx).run()


class _Pass:
    """One pass across its attempts."""

    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx
        self.total = RunStats()
        self.deleted = 0
        self.run_id: int | None = None
        self.plan: PassPlan | None = None
        self.background: BackgroundPrune | None = None
        self.store: PgStore | None = None
        self.lost_tokens: set[int] = set()  # in-flight records of ours left by a lost session
        self.held_by_peers: list[datetime | None] = []
        self.held_ids: list[DocumentId] = []

    def run(self) -> PassResult:
        set_log_fields(run=None, batch=None)
        retry = self.ctx.app.config.retry
        backoff = Backoff(retry.transient_attempts, retry.transient_backoff_max_s)
        while True:
            try:
                return self._attempt()
            except (BackendRefused, ConfigError) as exc:  # no retry, nobody charged
                self._after_outage()
                self._record_failed_run(exc)
                raise
            except Transient as exc:
                self._after_outage()
                # An outage a lower layer already retried to the budget is not tried again.
                delay = None if exc.retried else backoff.next_delay_s(exc.retry_after_s)
                if delay is None or self.ctx.stop.is_set():
                    self._record_failed_run(exc)
                    raise
                event(
                    log,
                    logging.WARNING,
                    "transient_failure",
                    model=self.ctx.model.name,
                    error=type(exc).__name__,
                    detail=str(exc),
                    attempt=backoff.attempt,
                    retry_in_s=delay,
                )
                if self._wait(exc, delay):
                    self._record_failed_run(exc)
                    raise

    def _wait(self, outage: Transient, delay_s: float) -> bool:
        """Back off after an outage; True if told to stop meanwhile. A server outage ends
        early when the server answers its probe again."""
        if isinstance(outage, BackendUnavailable):
            return wait_after_outage(self.ctx.backend, delay_s, self.ctx.stop)
        return self.ctx.stop.wait(delay_s)

    def _attempt(self) -> PassResult:
        ctx = self.ctx
        with ctx.connect() as conn:
            plan = self._begin(conn)
            store = self.store = self._open_store(conn, plan)
            try:
                stats = drain(
                    store,
                    ctx.backend,
                    ctx.app.chunking(ctx.model).chunker,
                    claim_size=ctx.model.claim_size,
                    dimensions=ctx.backend.dimensions,  # checked against the config at start
                    stop=ctx.stop,
                    on_batch=self._progress(),
                    limit=self._remaining(),
                    on_slice=ctx.on_slice,
                )
            finally:
                store.close()
            self.total = self.total.merged(stats)
            self.held_by_peers += store.held_by_peers
            self.held_ids += store.held_ids
            plan = self._settle_background(conn, plan)
            if stats.drained and not ctx.stop.is_set():
                finish(conn, ctx.pair, plan, self.held_by_peers, ctx.options)
            status = "interrupted" if ctx.stop.is_set() else "ok"
            with mapped_errors("finishing the run"):
                assert self.run_id is not None
                finish_run(conn, self.run_id, self.total, status=status, deleted=self.deleted)
        self.total.finish()
        return PassResult(self.total, self.deleted, status, tuple(dict.fromkeys(self.held_ids)))

    def _begin(self, conn: psycopg.Connection[Any]) -> PassPlan:
        """The first attempt starts the run's row and plans (pruning what must go first, and
        starting the prune after deletes beside the pass); a later one resumes them."""
        ctx = self.ctx
        if self.run_id is not None and self.plan is not None:
            with mapped_errors("resuming a run"):
                adopt_run(conn, self.run_id)
            return self.plan
        ctx.app.make_tables(conn, ctx.pair)
        chunking = ctx.app.chunking(ctx.model).fingerprint
        # Other settings than the pair's: stop before a run is recorded or a model loaded (the
        # writer's fence would refuse the first write, after the model's work).
        check_pair_chunking(conn, ctx.pair.names, chunking)
        with mapped_errors("starting a run"):
            run_id = start_run(conn, ctx.pair, ctx.options.trigger)
        set_log_fields(run=run_id)
        plan = prepare(conn, ctx.pair, ctx.options, chunking)
        if plan.prune_later:
            self.background = BackgroundPrune(
                ctx.app.url, ctx.app.config.connect_timeout_s, ctx.pair, plan
            )
        self.run_id, self.plan, self.deleted = run_id, plan, plan.deleted
        return plan

    def _open_store(self, conn: psycopg.Connection[Any], plan: PassPlan) -> PgStore:
        """The pass's store on a (new) session: our own in-flight records from a lost session are
        dropped uncharged, then the batches of processes that died are charged. Vectors are
        written on a second session, opened on the first write, beside the claiming one."""
        ctx = self.ctx
        chunking = ctx.app.chunking(ctx.model)
        # A chunked model's reads follow its chunker; only chunking "none" asks the model's own
        # window, which loads a lazy backend (a pass that finds nothing otherwise loads none).
        window_chars = ctx.backend.max_chars if chunking.capacity == 0 else 0
        rules = ClaimRules(
            stale_by=ctx.options.stale_by,
            retry_failed_now=ctx.options.retry_failed_now,
            prefix_chars=chunking.max_chars(window_chars),
            claim_chars=chunking.claim_chars(ctx.model.claim_size, window_chars),
            chunking=chunking.fingerprint,
            other_chunking=plan.rechunk,
        )
        store = PgStore(
            conn,
            ctx.pair,
            rules,
            retry=ctx.app.config.retry,
            phases=plan.phases,
            write_conn=ctx.connect,
        )
        if self.lost_tokens:
            store.forget(self.lost_tokens)
        self.lost_tokens = set()
        if crashed := store.recover_crashed():
            event(
                log,
                logging.WARNING,
                "crashed_batch_charged",
                model=ctx.pair.model_name,
                documents=crashed,
            )
        return store

    def _progress(self) -> Callable[[RunStats], None] | None:
        """The pass's running totals for `on_batch`, across attempts."""
        on_batch, before = self.ctx.on_batch, self.total
        if on_batch is None:
            return None
        return lambda stats: on_batch(before.merged(stats))

    def _remaining(self) -> int | None:
        limit = self.ctx.options.limit
        return None if limit is None else limit - self.total.done

    def _settle_background(self, conn: psycopg.Connection[Any], plan: PassPlan) -> PassPlan:
        """Wait for the background prune: count what it deleted, and re-read the sync state if
        it recorded its fingerprint (the watermark's compare-and-set then expects it)."""
        if self._join_background():
            with mapped_errors("reading the sync state"):
                plan = replace(
                    plan,
                    seen=sync_state.load(conn, self.ctx.pair),
                )
            self.plan = plan
        return plan

    def _join_background(self) -> bool:
        background, self.background = self.background, None
        if background is None:
            return False
        deleted, saved = background.join()
        self.deleted += deleted
        return saved

    def _after_outage(self) -> None:
        """What the lost attempt leaves for the next: the prune beside it is waited for, our
        in-flight records are forgotten uncharged, and peers' holds still bound the watermark."""
        self._join_background()
        if self.store is not None:
            self.lost_tokens |= self.store.open_tokens
            self.held_by_peers += self.store.held_by_peers
            self.held_ids += self.store.held_ids
            self.store.held_by_peers, self.store.held_ids = [], []

    def _record_failed_run(self, exc: Exception) -> None:
        """Best effort: the database may be the thing that is down."""
        if self.run_id is None:
            return
        config = self.ctx.app.config
        try:
            with connect(self.ctx.app.url, timeout_s=config.connect_timeout_s) as conn:
                finish_run(
                    conn,
                    self.run_id,
                    self.total,
                    status="failed",
                    deleted=self.deleted,
                    error=str(exc)[:500],
                )
        except Exception as err:  # the original error is the one worth raising
            event(log, logging.DEBUG, "run_not_recorded", run=self.run_id, error=type(err).__name__)
