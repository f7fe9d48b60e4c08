"""The loop of one pass: claim -> embed -> write, until nothing is claimable or we are told to stop.

It imports no psycopg, httpx or torch: the Store owns SQL and claims, the Backend owns the model.
A pass walks the key space in sweeps; each sweep claims batches after a keyset cursor. A sweep that
claimed nothing ends the pass, so documents that failed (and may be retried at once, as in a
backfill) or that a dead peer released are picked up by the next sweep.

BackendUnavailable propagates after the batch's claims are released, so that no document is
charged for an outage; the caller decides how long to back off.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from threading import Event
from typing import Protocol

from embedkeeper.backends import Backend
from embedkeeper.errors import BackendUnavailable, InputRejected
from embedkeeper.logs import set_log_fields
from embedkeeper.records import Claimed, Document, Embedded, Rejected, RunStats, clean_message
from embedkeeper.sync.batching import halves, vector_problem


class Store(Protocol):
    def claim(self, after: object | None, limit: int) -> Claimed: ...

    def save(self, embedded: Sequence[Embedded]) -> int:
        """Write the vectors, clear their failures, release them; returns how many were written."""
        ...

    def fail(self, rejected: Sequence[Rejected]) -> None:
        """Charge one attempt to each document and release it."""
        ...

    def release(self, documents: Sequence[Document]) -> None: ...

    def begin(self, documents: Sequence[Document]) -> int:
        """Record the batch as in flight (if the process dies now, its documents get charged)."""
        ...

    def end(self, token: int) -> None: ...


def embed_isolating_poison(
    backend: Backend, documents: Sequence[Document], dimensions: int
) -> tuple[list[Embedded], list[Rejected]]:
    """Embed a batch; when the backend rejects it, split it until the culprits stand alone, so
    one bad document never fails its neighbours. Vectors that are the wrong size, non-finite or
    zero are that document's failure and are never written."""
    try:
        results = backend.embed(documents)
    except InputRejected as exc:
        if len(documents) == 1:
            return [], [Rejected(documents[0], "InputRejected", clean_message(str(exc)))]
        embedded: list[Embedded] = []
        rejected: list[Rejected] = []
        for half in halves(documents):
            done, bad = embed_isolating_poison(backend, half, dimensions)
            embedded += done
            rejected += bad
        return embedded, rejected
    if len(results) != len(documents):
        raise BackendUnavailable(
            f"backend returned {len(results)} vectors for {len(documents)} documents"
        )
    good: list[Embedded] = []
    bad_vectors: list[Rejected] = []
    for result in results:
        problem = vector_problem(result.vector, dimensions)
        if problem is None:
            good.append(result)
        else:
            bad_vectors.append(Rejected(result.document, "InvalidVector", problem))
    return good, bad_vectors


@dataclass(slots=True)
class Outcome:
    """What became of a claimed batch: vectors, rejections, and the parts that could not be
    embedded (released uncharged) with the error that stopped them."""

    embedded: list[Embedded] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    unfinished: list[Document] = field(default_factory=list)
    error: BaseException | None = None


def embed_claimed(
    backend: Backend, documents: Sequence[Document], dimensions: int, stop: Event | None = None
) -> Outcome:
    """Split a claimed batch into the backend's request size and embed the parts, up to
    `backend.concurrency` at a time (an embedding server works on several requests at once).
    A part that fails does not cost the parts that succeeded: they are still written."""
    size = max(1, backend.request_size)
    if len(documents) > size:
        # Parts of similar length: a model pads each batch to its longest text.
        documents = sorted(documents, key=lambda d: len(d.text))
    parts = [documents[i : i + size] for i in range(0, len(documents), size)]

    def embed_part(part: Sequence[Document]) -> tuple[list[Embedded], list[Rejected]] | None:
        if stop is not None and stop.is_set():
            return None  # stopping: the parts not started yet are released, uncharged
        return embed_isolating_poison(backend, part, dimensions)

    outcome = Outcome()
    workers = min(backend.concurrency, len(parts))
    if workers <= 1:
        # One at a time: in this thread (starting a pool's thread costs milliseconds a batch
        # when another thread, such as the background prune, competes for the GIL).
        for part in parts:
            _collect(outcome, part, partial(embed_part, part))
        return outcome
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each part runs in a copy of this context, so its log lines keep the run and batch ids.
        futures = [
            (part, pool.submit(contextvars.copy_context().run, embed_part, part)) for part in parts
        ]
        for part, future in futures:
            _collect(outcome, part, future.result)
    return outcome


def _collect(
    outcome: Outcome,
    part: Sequence[Document],
    result_of: Callable[[], tuple[list[Embedded], list[Rejected]] | None],
) -> None:
    """Add one part's result to the outcome; a part that raised or was not started is
    unfinished (released uncharged), and the first error is kept."""
    try:
        result = result_of()
    except BaseException as exc:
        outcome.unfinished += part
        outcome.error = outcome.error or exc
        return
    if result is None:
        outcome.unfinished += part
        return
    done, bad = result
    outcome.embedded += done
    outcome.rejected += bad


def drain(
    store: Store,
    backend: Backend,
    *,
    claim_size: int,
    dimensions: int,
    stop: Event,
    on_batch: Callable[[RunStats], None] | None = None,
    limit: int | None = None,
    write_behind: bool = False,
) -> RunStats:
    """Embed until a sweep of the key space leaves nothing behind, `limit` documents are done,
    or `stop` is set.

    A sweep that claimed documents is followed by another, for what it left: documents that
    failed (a backfill retries them at once), that a peer held, or that changed while they were
    embedded. A sweep with none of those ends the pass: what changed behind its cursor is the
    next pass's work, as it would be had it changed a moment after the pass.

    With `write_behind`, each batch is written while the next is claimed and embedded (see
    BatchWriter); the store must then take writes from another thread (PgStore does)."""
    stats = RunStats()
    writer = BatchWriter(store, stats, on_batch, behind=write_behind)
    try:
        _sweep_until_done(store, backend, writer, claim_size, dimensions, stop, limit)
    except BaseException:
        writer.close(quietly=True)  # the batch in writing is committed or fails on its own
        raise
    writer.close()
    return stats


def _sweep_until_done(
    store: Store,
    backend: Backend,
    writer: BatchWriter,
    claim_size: int,
    dimensions: int,
    stop: Event,
    limit: int | None,
) -> None:
    stats = writer.stats
    cursor: object | None = None
    claimed_in_sweep = batches = 0
    left_at_sweep_start = left_behind = 0
    while not stop.is_set():
        done = stats.ok + stats.failed + stats.skipped + writer.in_writing
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
            outcome = embed_batch(store, backend, group, dimensions, stop)
            writer.write(outcome)
            if outcome.error is not None:
                writer.wait()  # what the batch did get is written before the error goes up
                store.release([d for later in groups[index + 1 :] for d in later])
                raise outcome.error


def isolate_suspects(documents: Sequence[Document]) -> list[list[Document]]:
    """The documents whose last batch died with its process go alone, one per batch, so that
    the next death is charged to the culprit only."""
    regular = [d for d in documents if not d.suspect]
    return ([regular] if regular else []) + [[d] for d in documents if d.suspect]


def embed_batch(
    store: Store,
    backend: Backend,
    documents: Sequence[Document],
    dimensions: int,
    stop: Event | None = None,
) -> Outcome:
    """Embed one batch, recorded as in flight while the backend has it (a death meanwhile is
    charged to its documents); the parts it could not embed are released at once."""
    token = store.begin(documents)
    outcome = embed_claimed(backend, documents, dimensions, stop)
    store.release(outcome.unfinished)
    store.end(token)
    return outcome


class BatchWriter:
    """Writes each batch's vectors and failures, and counts them.

    With `behind`, a batch is written on a thread of its own while the loop claims and embeds
    the next one (one batch in writing at a time), so the database's work on one batch overlaps
    the model's on the next. Either way a batch's claims are released only after its commit."""

    def __init__(
        self,
        store: Store,
        stats: RunStats,
        on_batch: Callable[[RunStats], None] | None,
        *,
        behind: bool,
    ) -> None:
        self.store = store
        self.stats = stats
        self.on_batch = on_batch
        self.in_writing = 0  # documents of the batch being written
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="writer") if behind else None
        self._writing: Future[None] | None = None

    def write(self, outcome: Outcome) -> None:
        try:
            self.wait()
        except BaseException:
            self._release_quietly(outcome)
            raise
        if self._pool is None:
            self._write(outcome)
            return
        self.in_writing = len(outcome.embedded) + len(outcome.rejected)
        self._writing = self._pool.submit(contextvars.copy_context().run, self._write, outcome)

    def wait(self) -> None:
        """Until the batch in writing is committed; raises what stopped it."""
        writing, self._writing = self._writing, None
        if writing is not None:
            try:
                writing.result()
            finally:
                self.in_writing = 0

    def close(self, *, quietly: bool = False) -> None:
        try:
            self.wait()
        except Exception:
            if not quietly:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown()

    def _write(self, outcome: Outcome) -> None:
        written = self.store.save(outcome.embedded)
        self.store.fail(outcome.rejected)
        stats = self.stats
        stats.ok += written
        stats.skipped += len(outcome.embedded) - written
        stats.failed += len(outcome.rejected)
        stats.tokens += sum(e.token_count for e in outcome.embedded)
        stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(stats)

    def _release_quietly(self, outcome: Outcome) -> None:
        """A batch that will not be written: let its claims go (best effort, an error is
        already on its way up; a lost session has dropped them anyway)."""
        with contextlib.suppress(Exception):  # the error on its way up is the one that matters
            documents = [e.document for e in outcome.embedded]
            self.store.release(documents + [r.document for r in outcome.rejected])
