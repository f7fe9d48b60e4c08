"""The loop of one pass: claim -> chunk and embed -> write, until nothing is left or we stop.

It imports no psycopg, httpx or torch: the Store owns SQL and claims, the Backend owns the model.
A pass walks the key space in sweeps; each sweep claims batches after a keyset cursor. A sweep that
claimed nothing ends the pass, so documents that failed (and may be retried at once, as in a
backfill) or that a dead peer released are picked up by the next sweep.

BackendUnavailable propagates after the batch's claims are released, so that no document is
charged for an outage; the caller decides how long to back off.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import Event

from embedkeeper.backends import Backend
from embedkeeper.chunking import Chunker
from embedkeeper.logs import set_log_fields
from embedkeeper.records import RunStats
from embedkeeper.sync.batch_writer import BatchWriter
from embedkeeper.sync.chunked import embed_chunked_batch
from embedkeeper.sync.embedding import OnSlice, isolate_suspects
from embedkeeper.sync.store import Store


def drain(
    store: Store,
    backend: Backend,
    chunker: Chunker,
    *,
    claim_size: int,
    dimensions: int,
    stop: Event,
    on_batch: Callable[[RunStats], None] | None = None,
    limit: int | None = None,
    on_slice: OnSlice | None = None,
) -> RunStats:
    """Embed until a sweep of the key space leaves nothing behind, `limit` documents are done,
    or `stop` is set.

    A sweep that claimed documents is followed by another, for what it left: documents that
    failed (a backfill retries them at once), that a peer held, or that changed while they were
    embedded. A sweep with none of those ends the pass: what changed behind its cursor is the
    next pass's work, as it would be had it changed a moment after the pass.

    Each batch is written while the next is claimed and embedded (see BatchWriter); the store
    must take writes from another thread (PgStore does)."""
    stats = RunStats()
    writer = BatchWriter(store, stats, on_batch)
    try:
        _sweep_until_done(
            store, backend, chunker, writer, claim_size, dimensions, stop, limit, on_slice
        )
    except BaseException:
        writer.close(quietly=True)  # the batch in writing is committed or fails on its own
        raise
    writer.close()
    return stats


def _sweep_until_done(
    store: Store,
    backend: Backend,
    chunker: Chunker,
    writer: BatchWriter,
    claim_size: int,
    dimensions: int,
    stop: Event,
    limit: int | None,
    on_slice: OnSlice | None,
) -> None:
    stats = writer.stats
    cursor: object | None = None
    claimed_in_sweep = batches = 0
    left_at_sweep_start = left_behind = 0
    while not stop.is_set():
        done = stats.done + writer.in_writing
        budget = claim_size if limit is None else min(claim_size, limit - done)
        if budget <= 0:
            break
        claimed = store.claim(cursor, budget)
        left_behind += claimed.held
        if claimed.last_key is None:  # this sweep reached the end of the key space
            writer.wait()  # the failures of the batch in writing count in what is left
            left = left_behind + stats.failed + stats.skipped
            if claimed_in_sweep == 0 or left == left_at_sweep_start:
                stats.drained = True
                break
            cursor, claimed_in_sweep, left_at_sweep_start = None, 0, left
            continue
        cursor = claimed.last_key
        if not claimed.documents:
            continue
        claimed_in_sweep += len(claimed.documents)
        groups = isolate_suspects(claimed.documents)
        for index, group in enumerate(groups):
            if stop.is_set():  # stop claiming: let the suspects still waiting go
                store.release([d for later in groups[index:] for d in later])
                break
            batches += 1
            set_log_fields(batch=batches)
            outcome = embed_chunked_batch(
                store, backend, chunker, group, dimensions, stop, on_slice
            )
            writer.write(outcome)
            if outcome.error is not None:
                writer.wait()  # what the batch did get is written before the error goes up
                store.release([d for later in groups[index + 1 :] for d in later])
                raise outcome.error
