"""Writing behind: each batch is committed on a thread of its own while the loop claims and
embeds the next, so the database's work overlaps the model's."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from embedkeeper.records import RunStats
from embedkeeper.sync.chunked import ChunkedOutcome as Outcome
from embedkeeper.sync.store import Store


class BatchWriter:
    """Writes each batch's vectors and failures, and counts them.

    A batch is written on a thread of its own while the loop claims and embeds the next one (one
    batch in writing at a time), so the database's work on one batch overlaps the model's on the
    next. A batch's claims are released only after its commit."""

    def __init__(
        self,
        store: Store,
        stats: RunStats,
        on_batch: Callable[[RunStats], None] | None,
    ) -> None:
        self.store = store
        self.stats = stats
        self.on_batch = on_batch
        self.in_writing = 0  # documents of the batch being written
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._writing: Future[None] | None = None

    def write(self, outcome: Outcome) -> None:
        try:
            self.wait()
        except BaseException:
            self._release_quietly(outcome)
            raise
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
            self._pool.shutdown()

    def _write(self, outcome: Outcome) -> None:
        written = self.store.save(outcome.embedded)
        self.store.fail(outcome.rejected)
        stats = self.stats
        stats.ok += written
        stats.skipped += len(outcome.embedded) - written
        stats.failed += len(outcome.rejected)
        stats.tokens += sum(e.embedded_tokens for e in outcome.embedded)
        stats.chunks += sum(len(e.chunks) - e.reused_chunks for e in outcome.embedded)
        stats.reused_chunks += sum(e.reused_chunks for e in outcome.embedded)
        stats.reused_tokens += sum(e.reused_tokens for e in outcome.embedded)
        stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(stats)

    def _release_quietly(self, outcome: Outcome) -> None:
        """A batch that will not be written: let its claims go (best effort, an error is
        already on its way up; a lost session has dropped them anyway)."""
        with contextlib.suppress(Exception):  # the error on its way up is the one that matters
            documents = [e.document for e in outcome.embedded]
            self.store.release(documents + [r.document for r in outcome.rejected])
