"""PgStore: the pipeline's Store on PostgreSQL. Claims, their releases and the in-flight records
live in one session; vectors and failures may be written on a second one (`write_conn`, opened on
the first write), so that a batch is written while the next one is claimed and embedded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from embedkeeper.chunking.chunker import vectors_part
from embedkeeper.config import RetryConfig
from embedkeeper.records import ChunkedEmbedding, Claimed, Document, DocumentId, Rejected
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pass_io.chunk_writer import ChunkWriter
from embedkeeper.store.pass_io.claims import ClaimRules, Phase, claim_batch, release
from embedkeeper.store.pass_io.inflight import InFlight
from embedkeeper.store.pass_io.writer import charge


def as_array(embedding: Any) -> npt.NDArray[np.float32]:
    """A vector as pgvector's adapter reads it (numpy for vector, HalfVector for halfvec)."""
    values = embedding.to_numpy() if hasattr(embedding, "to_numpy") else embedding
    return np.asarray(values, dtype=np.float32)


class PgStore:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        pair: Pair,
        rules: ClaimRules,
        *,
        retry: RetryConfig,
        phases: Sequence[Phase] = (("all", None),),
        write_conn: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.conn = conn
        self.pair = pair
        self.rules = rules
        self.retry = retry
        self.phases = list(phases)
        self.open_tokens: set[int] = set()  # in-flight records not yet closed
        self.held_by_peers: list[datetime | None] = []
        self.held_ids: list[DocumentId] = []  # the documents a peer held, passed over
        self.inflight = InFlight(conn, pair, rules.chunking)
        self._open_write_conn = write_conn
        self._write_conn: psycopg.Connection[Any] | None = None
        self._writer: ChunkWriter | None = None
        # Documents claimed and not yet released. A batch may still be in writing when the next
        # claim runs, and an advisory lock is re-entrant: without this, a claim in a later
        # phase (the due retries) could take a document of that batch a second time.
        self._holding: set[object] = set()
        self._holding_lock = threading.Lock()

    @property
    def writer(self) -> ChunkWriter:
        if self._writer is None:
            if self._open_write_conn is not None:
                self._write_conn = self._open_write_conn()
            self._writer = ChunkWriter(self._write_conn or self.conn, self.pair)
        return self._writer

    def close(self) -> None:
        """Close the write session, if one was opened (the claiming one is the caller's)."""
        if self._write_conn is not None:
            self._write_conn.close()

    def stored_vectors(
        self, passages: Sequence[tuple[DocumentId, str]]
    ) -> list[npt.NDArray[np.float32] | None]:
        """The vectors a re-embedded document may keep (store/source/queries.py stored_vectors),
        read in the claiming session: one round trip a batch, only for documents claimed as
        reusable, none in a first backfill."""
        found: list[npt.NDArray[np.float32] | None] = [None] * len(passages)
        if not passages:
            return found
        params = {
            "ids": [document_id for document_id, _ in passages],
            "passages": [passage for _, passage in passages],
            "vectors": vectors_part(self.rules.chunking),
        }
        with mapped_errors("reading the stored vectors of re-embedded documents"):
            rows = self.conn.execute(self.pair.statements.stored_vectors(), params).fetchall()
        for place, embedding in rows:
            found[place - 1] = as_array(embedding)
        return found

    def claim(self, after: object | None, limit: int) -> Claimed:
        """Claim in the pass's phases in turn; the cursor is (phase, key within the phase)."""
        phase, key = after if isinstance(after, tuple) else (0, None)
        with self._holding_lock:
            holding = set(self._holding)
        while phase < len(self.phases):
            with mapped_errors("claiming documents"):
                result = claim_batch(
                    self.conn, self.pair, self.rules, self.phases[phase], key, limit
                )
            self.held_by_peers += result.held_by_peers
            self.held_ids += result.held_ids
            if result.claimed.last_key is not None:
                return Claimed(
                    self._new_claims(result.claimed.documents, holding),
                    (phase, result.claimed.last_key),
                    held=len(result.held_by_peers),
                )
            phase, key = phase + 1, None
        return Claimed([], None)

    def _new_claims(self, documents: list[Document], holding: set[object]) -> list[Document]:
        """Drop the documents we were already holding when the claim began: the claim took their
        lock a second time, which is given back here; the first hold stays with their batch."""
        again = [d for d in documents if d.id in holding]
        if again:
            with mapped_errors("releasing claims"):
                release(self.conn, self.pair, again)
            documents = [d for d in documents if d.id not in holding]
        with self._holding_lock:
            self._holding.update(d.id for d in documents)
        return documents

    def save(self, embedded: Sequence[ChunkedEmbedding]) -> int:
        """Commit the documents' chunks, then release their claims."""
        if not embedded:
            return 0
        with mapped_errors("writing vectors"):
            written = len(self.writer.replace(embedded))
        self.release([e.document for e in embedded])
        return written

    def fail(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        with mapped_errors("recording failures"):
            writer = self.writer
            charge(writer.conn, self.pair, rejected, self.retry)
        self.release([r.document for r in rejected])

    def begin(self, documents: Sequence[Document]) -> int:
        with mapped_errors("recording a batch in flight"):
            token = self.inflight.begin(documents)
        self.open_tokens.add(token)
        return token

    def end(self, token: int) -> None:
        with mapped_errors("closing a batch in flight"):
            self.inflight.end(token)
        self.open_tokens.discard(token)

    def forget(self, tokens: set[int]) -> None:
        """Our own in-flight records from a session we lost: no crash, nobody to charge."""
        with mapped_errors("forgetting batches of a lost session"):
            self.inflight.forget(sorted(tokens))

    def recover_crashed(self) -> int:
        with mapped_errors("charging batches of dead processes"):
            return self.inflight.recover_crashed(self.retry)

    def release(self, documents: Sequence[Document]) -> None:
        if self.conn.closed:
            return  # the claims died with the session
        with mapped_errors("releasing claims"):
            release(self.conn, self.pair, documents)
        with self._holding_lock:
            self._holding.difference_update(d.id for d in documents)
