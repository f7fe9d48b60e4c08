"""Carrying a pass's decision out: the prunes before its walk, and the watermark after it.

sync/plan.py decides; this module runs what was decided against the store and hands the pass a
PassPlan: where to walk, what its start saw (the watermark's compare-and-set expects it), and
what the prune beside the walk is to do (sync/background_prune.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pass_io import delete_log
from embedkeeper.store.pass_io.claims import Phase
from embedkeeper.store.pass_io.observe import Observed, observe
from embedkeeper.store.pass_io.prune import prune_all, prune_changed
from embedkeeper.store.state import sync_state
from embedkeeper.store.state.sync_state import SyncState
from embedkeeper.sync.plan import PassOptions, decide


@dataclass(frozen=True, slots=True)
class PassPlan:
    """Decided and done at a pass's start: where it looks, and the watermark it may set."""

    phases: list[Phase]
    seen: SyncState
    newest: datetime | None
    deleted: int
    # Set when the table saw deletes: the pass prunes by key in the background and records
    # this fingerprint when done.
    prune_later: bool = False
    fingerprint: str | None = None
    # The delete log's position read before the fingerprint, when the source is tracked: the
    # full prune records it as its baseline (store/pass_io/delete_log.py).
    log_position: int | None = None
    # Set when the log accounts for every delete: the background prune prunes these entries
    # instead of reading every key.
    from_log: delete_log.LogPrune | None = None
    # Some records were chunked with other settings (observe's rechunk): claims compare each
    # record's chunking only then.
    rechunk: bool = True


def prepare(
    conn: psycopg.Connection[Any],
    pair: Pair,
    options: PassOptions,
    chunking: str | None = None,
) -> PassPlan:
    """Observe, decide, and prune what must be pruned before the walk. `chunking`: the model's
    chunker fingerprint (records of other settings make a scheduled pass walk everything)."""
    observed = observe(conn, pair, chunking)
    decision = decide(options, observed, pair.source)
    seen, deleted = observed.seen, 0
    if decision.prune_first:
        deleted, seen = _prune_first(conn, pair, observed)
    if decision.prune_changed_since is not None:
        deleted += prune_changed(conn, pair, decision.prune_changed_since)
    from_log = None
    if decision.consult_log and observed.log_position is not None:
        with mapped_errors("reading the delete log"):
            from_log = delete_log.covering(
                conn, pair.source, seen, observed.fingerprint, observed.log_position
            )
    return PassPlan(
        decision.phases,
        seen,
        observed.newest,
        deleted,
        prune_later=decision.prune_deleted_beside or from_log is not None,
        fingerprint=observed.fingerprint,
        log_position=observed.log_position,
        rechunk=observed.rechunk or chunking is None,  # None: not asked, so assume some
        from_log=from_log,
    )


def _prune_first(
    conn: psycopg.Connection[Any], pair: Pair, observed: Observed
) -> tuple[int, SyncState]:
    """Prune, then record the fingerprint read before it (a delete that lands meanwhile moves
    the counters again, so the next pass prunes once more); returns what the compare-and-set of
    the watermark must now expect."""
    pruned = prune_all(conn, pair)
    if pruned is None:  # a peer is pruning: it covers us, and its record is its own
        return 0, observed.seen
    with mapped_errors("recording the sync state"):
        sync_state.save_fingerprint(conn, pair, observed.fingerprint, observed.log_position)
        return pruned, sync_state.load(conn, pair)


def finish(
    conn: psycopg.Connection[Any],
    pair: Pair,
    plan: PassPlan,
    held_by_peers: list[datetime | None],
    options: PassOptions,
) -> None:
    """A pass that drained everything it walked sets the watermark to the newest updated_at it
    had seen at its start, but not past a document a peer held (it may release it unfinished)."""
    floor = [u for u in held_by_peers if u is not None]
    watermark = min([plan.newest, *floor]) if plan.newest is not None else None
    with mapped_errors("recording the sync state"):
        sync_state.advance_watermark(conn, pair, plan.seen, watermark)
        if options.stale_by == "hash" and plan.phases == [("all", None)]:
            sync_state.record_sweep(conn, pair)
