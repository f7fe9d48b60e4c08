"""What a pass walks and what it prunes, decided at its start; and the watermark it leaves.

A scheduled pass (`changes_only`) with a watermark walks the rows changed since it and the due
retries, and prunes by key only when the table's deleted-row counters moved; any other pass walks
the whole key index and prunes everything. See store/sync_state.py for the state it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from embedkeeper.store import delete_log, sync_state
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pg_store import Phase
from embedkeeper.store.queries import SourceQueries, StaleBy
from embedkeeper.store.sync_state import SyncState


@dataclass(frozen=True, slots=True)
class PassOptions:
    trigger: str  # backfill, schedule or sweep
    stale_by: StaleBy
    ignore_retry_delay: bool  # a backfill retries failed documents at once, up to max_attempts
    limit: int | None = None
    # A scheduled pass: walk only what changed since the watermark (plus due retries), and prune
    # only if the table saw deletes. A backfill or sweep walks and prunes everything.
    changes_only: bool = False


def prune(
    conn: psycopg.Connection[Any], queries: SourceQueries, model: str, *, deleted_only: bool = False
) -> int | None:
    """Delete the vectors and failures of documents that are gone (plan_pass decides when).

    Housekeeping that one instance does for all: a transaction-scoped advisory lock lets only one
    instance prune a model at a time; the others skip it (None: the one pruning covers them)."""
    with mapped_errors("pruning vectors of deleted documents"), conn.transaction():
        got = conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtext('embedkeeper:prune'), hashtext(%s))",
            (model,),
        ).fetchone()
        if not (got and got[0]):
            return None
        row = conn.execute(queries.prune(deleted_only=deleted_only), {"model": model}).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class PassPlan:
    """Decided at a pass's start: where it looks, and the watermark it may set if it drains."""

    phases: list[Phase]
    seen: SyncState
    newest: datetime | None
    deleted: int
    # Set when the table saw deletes: the pass prunes by key in the background (see
    # sync/background_prune.py) and records this fingerprint when done.
    prune_later: bool = False
    fingerprint: str | None = None
    # The delete log's position read before the fingerprint, when the source is tracked: the
    # full prune records it as its baseline (store/delete_log.py).
    log_position: int | None = None
    # Set when the log accounts for every delete: the background prune prunes these entries
    # instead of reading every key.
    from_log: delete_log.LogPrune | None = None


def plan_pass(
    conn: psycopg.Connection[Any], queries: SourceQueries, model: str, options: PassOptions
) -> PassPlan:
    """Read the model's sync state, prune what needs pruning, and choose the walk."""
    source = queries.source
    with mapped_errors("reading the sync state"):
        seen = sync_state.load(conn, model)
        # Without the column there is nothing to read (and max() of NULLs would scan the table).
        newest = (
            conn.execute(queries.newest_update()).fetchone() if source.updated_at_column else None
        )
        # The log's position first: every entry up to it is then in the counter read after it.
        log_at = delete_log.position(conn, source)
        fingerprint = sync_state.table_fingerprint(conn, source)
    since = seen.since(source) if options.changes_only else None
    known = (
        fingerprint is not None
        and seen.fingerprint is not None
        and seen.signature == sync_state.source_signature(source)
    )
    deleted = 0
    from_log: delete_log.LogPrune | None = None
    prune_later = known and options.changes_only and fingerprint != seen.fingerprint
    if not (known and options.changes_only):
        deleted, seen = _prune(conn, queries, model, fingerprint, seen, log_at, deleted_only=False)
    else:
        if since is not None:  # rows changed since may have gone blank or out of scope
            with mapped_errors("pruning vectors of changed documents"):
                row = conn.execute(queries.prune_changed(), {"model": model, "since": since})
                deleted += int(next(iter(row))[0])
        if log_at is not None and log_at != seen.log_position:
            with mapped_errors("reading the delete log"):
                from_log = delete_log.covering(conn, source, seen, fingerprint, log_at)
            # The log accounts for every delete: the background prune reads it, not every key.
            prune_later = prune_later or from_log is not None
    phases: list[Phase] = [("changed", since), ("retries", None)] if since else [("all", None)]
    return PassPlan(
        phases,
        seen,
        newest[0] if newest else None,
        deleted,
        prune_later,
        fingerprint,
        log_at,
        from_log,
    )


def _prune(
    conn: psycopg.Connection[Any],
    queries: SourceQueries,
    model: str,
    fingerprint: str | None,
    seen: SyncState,
    log_at: int | None,
    *,
    deleted_only: bool,
) -> tuple[int, SyncState]:
    """Prune, then record the fingerprint read before it (a delete that lands meanwhile moves
    the counters again, so the next pass prunes once more); returns what the compare-and-set of
    the watermark must now expect."""
    pruned = prune(conn, queries, model, deleted_only=deleted_only)
    if pruned is None:  # a peer is pruning: it covers us, and its record is its own
        return 0, seen
    with mapped_errors("recording the sync state"):
        sync_state.save_fingerprint(conn, model, queries.source, fingerprint, log_at)
        return pruned, sync_state.load(conn, model)


def finish_plan(
    conn: psycopg.Connection[Any],
    queries: SourceQueries,
    model: str,
    plan: PassPlan,
    held_by_peers: list[datetime | None],
    options: PassOptions,
) -> None:
    """A pass that drained everything it walked sets the watermark to the newest updated_at it
    had seen at its start, but not past a document a peer held (it may release it unfinished)."""
    floor = [u for u in held_by_peers if u is not None]
    watermark = min([plan.newest, *floor]) if plan.newest is not None else None
    with mapped_errors("recording the sync state"):
        sync_state.advance_watermark(conn, model, queries.source, plan.seen, watermark)
        if options.stale_by == "hash" and plan.phases == [("all", None)]:
            sync_state.record_sweep(conn, model)
