"""Writes: vectors upserted in one statement per batch, failures charged, claims released.

Vectors go to a session temp table by binary COPY, then one INSERT ... ON CONFLICT moves those
whose document still has the embedded text into embedkeeper.embeddings and clears their failures.
Claims are released only after the commit, so a peer that takes the lock next sees the vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from daemon.claims import release
from daemon.config import RetryConfig
from daemon.copy_block import copy_block
from daemon.documents import Document, Embedded, Rejected
from daemon.logs import mask_secrets
from daemon.queries import SourceQueries


class Writer:
    def __init__(self, conn: psycopg.Connection[Any], queries: SourceQueries, model: str) -> None:
        self.conn = conn
        self.queries = queries
        self.model = model
        # Both made on first use, so a pass that finds nothing does not pay for them.
        self._staging = False
        self._session: dict[str, Any] = {}
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
        release(self.conn, self.queries, self.model, [e.document for e in embedded])
        return len(written)

    def fail(self, rejected: Sequence[Rejected], retry: RetryConfig) -> None:
        if not rejected:
            return
        self.charge(rejected, retry)
        release(self.conn, self.queries, self.model, [r.document for r in rejected])

    def charge(
        self, rejected: Sequence[Rejected], retry: RetryConfig, *, may_review: bool = True
    ) -> None:
        """One attempt more for each document (no claims involved: see recover_crashed).
        With may_review=False the attempt counts but cannot put the document in review."""
        if not rejected:
            return
        with self.conn.transaction():
            self.conn.execute(
                self.queries.record_failures(),
                {
                    "model": self.model,
                    "ids": [r.document.id for r in rejected],
                    "classes": [r.error_class for r in rejected],
                    "messages": [mask_secrets(r.message) for r in rejected],
                    "hashes": [r.document.content_hash for r in rejected],
                    "max_attempts": retry.max_attempts if may_review else 1 << 30,
                    "backoff_s": retry.backoff_s,
                    "backoff_max_s": retry.backoff_max_s,
                },
            )

    def begin(self, documents: Sequence[Document]) -> int:
        if not self._session:
            # This session's identity, read once: in-flight records carry it (recover_crashed).
            me = self.conn.execute(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).fetchone()
            assert me is not None
            self._session = {"pid": me[0], "started": me[1]}
        row = self.conn.execute(
            self.queries.begin_inflight(),
            {"model": self.model, "ids": [str(d.id) for d in documents], **self._session},
        ).fetchone()
        assert row is not None
        return int(row[0])

    def end(self, token: int) -> None:
        self.conn.execute("DELETE FROM embedkeeper.inflight WHERE id = %s", (token,))

    def recover_crashed(self, retry: RetryConfig) -> int:
        """Charge the documents of batches whose process died mid-batch one attempt each; returns
        how many. A death in a batch of many cannot put a document in review (its neighbours
        may be innocent); only a death with the document alone in its batch can."""
        rows = self.conn.execute(self.queries.recover_crashed(), {"model": self.model}).fetchall()
        message = "the process embedding this document's batch died (crash, kill or lost lease)"
        for solo in (True, False):
            dead = [
                Rejected(
                    Document(id=r[0], text="", cut=False, content_hash=bytes(r[1])),
                    "Crashed",
                    message,
                )
                for r in rows
                if r[2] == solo
            ]
            self.charge(dead, retry, may_review=solo)
        return len(rows)

    def forget(self, tokens: Sequence[int]) -> None:
        """In-flight records of this very process whose session was lost: it is alive, so this
        was no crash, and nobody is charged."""
        if tokens:
            self.conn.execute(
                "DELETE FROM embedkeeper.inflight WHERE id = ANY(%s)", (list(tokens),)
            )
