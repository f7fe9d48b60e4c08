"""Writes: vectors upserted in one statement per batch, and failures charged.

Vectors go to a session temp table by binary COPY, then one INSERT ... ON CONFLICT moves those
whose document still has the embedded text into embedkeeper.embeddings and clears their failures.
The writer may have a session of its own, so that a batch is written while the next is claimed
and embedded; the claims live in the claiming session, which releases them only after the commit
(store/pg_store.py), so a peer that takes the lock next sees the vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from embedkeeper.config import RetryConfig
from embedkeeper.logs import mask_secrets
from embedkeeper.records import Embedded, Rejected
from embedkeeper.store.copy_block import copy_block
from embedkeeper.store.queries import SourceQueries


class Writer:
    def __init__(self, conn: psycopg.Connection[Any], queries: SourceQueries, model: str) -> None:
        self.conn = conn
        self.queries = queries
        self.model = model
        # Made on first use, so a pass that finds nothing does not pay for it.
        self._staging = False
        self._copy_types = [queries.id_type, "vector", "bytea", "timestamptz", "int4", "bool"]

    def save(self, embedded: Sequence[Embedded]) -> int:
        if not embedded:
            return 0
        if not self._staging:
            self.conn.execute(self.queries.create_staging())
            self._staging = True
        with self.conn.transaction():
            with self.conn.cursor().copy(
                "COPY pg_temp.embedkeeper_staging FROM STDIN (FORMAT BINARY)"
            ) as copy:
                block = copy_block(embedded, self.queries.id_type)
                if block is not None:
                    copy.write(block)
                else:
                    copy.set_types(self._copy_types)
                    for e in embedded:
                        d = e.document
                        copy.write_row(
                            (
                                d.id,
                                e.vector,
                                d.content_hash,
                                d.updated_at,
                                e.token_count,
                                e.truncated,
                            )
                        )
            written = self.conn.execute(
                self.queries.upsert_from_staging(), {"model": self.model}
            ).fetchall()
        return len(written)

    def charge(self, rejected: Sequence[Rejected], retry: RetryConfig) -> None:
        charge(self.conn, self.queries, self.model, rejected, retry)


def charge(
    conn: psycopg.Connection[Any],
    queries: SourceQueries,
    model: str,
    rejected: Sequence[Rejected],
    retry: RetryConfig,
    *,
    may_review: bool = True,
) -> None:
    """One attempt more for each document (claims are the caller's).
    With may_review=False the attempt counts but cannot put the document in review."""
    if not rejected:
        return
    with conn.transaction():
        conn.execute(
            queries.record_failures(),
            {
                "model": model,
                "ids": [r.document.id for r in rejected],
                "classes": [r.error_class for r in rejected],
                "messages": [mask_secrets(r.message) for r in rejected],
                "hashes": [r.document.content_hash for r in rejected],
                "max_attempts": retry.max_attempts if may_review else 1 << 30,
                "backoff_s": retry.backoff_s,
                "backoff_max_s": retry.backoff_max_s,
            },
        )
