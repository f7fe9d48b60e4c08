"""In-flight records: which batches a session is embedding, so that a process that dies mid-batch
is charged for it (embedkeeper.inflight).

A record names the session that holds the batch's claims (its pid and start time, read once); a
record whose session is gone belongs to a process that died with the batch in hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from embedkeeper.config import RetryConfig
from embedkeeper.records import Document, Rejected
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pass_io.writer import charge

CRASHED = "the process embedding this document's batch died (crash, kill or lost lease)"


class InFlight:
    """Records on the claiming session's connection."""

    def __init__(self, conn: psycopg.Connection[Any], pair: Pair, chunking: str) -> None:
        self.conn = conn
        self.pair = pair
        self.queries = pair.statements
        self._pair = {"source": pair.source_name, "model": pair.model_name}
        self._chunking = chunking
        self._session: dict[str, Any] = {}

    def begin(self, documents: Sequence[Document]) -> int:
        if not self._session:
            me = self.conn.execute(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).fetchone()
            assert me is not None
            self._session = {"pid": me[0], "started": me[1]}
        row = self.conn.execute(
            self.queries.begin_inflight(),
            {**self._pair, "ids": [str(d.id) for d in documents], **self._session},
        ).fetchone()
        assert row is not None
        return int(row[0])

    def end(self, token: int) -> None:
        self.conn.execute("DELETE FROM embedkeeper.inflight WHERE id = %s", (token,))

    def recover_crashed(self, retry: RetryConfig) -> int:
        """Charge the documents of batches whose process died mid-batch one attempt each; returns
        how many. A death in a batch of many cannot put a document in review (its neighbours
        may be innocent); only a death with the document alone in its batch can."""
        rows = self.conn.execute(
            self.queries.recover_crashed(), {**self._pair, "chunking": self._chunking}
        ).fetchall()
        for solo in (True, False):
            dead = [
                Rejected(
                    Document(id=r[0], text="", cut=False, content_hash=bytes(r[1])),
                    "Crashed",
                    CRASHED,
                )
                for r in rows
                if r[2] == solo
            ]
            charge(self.conn, self.pair, dead, retry, may_review=solo)
        return len(rows)

    def forget(self, tokens: Sequence[int]) -> None:
        """In-flight records of this very process whose session was lost: it is alive, so this
        was no crash, and nobody is charged."""
        if tokens:
            self.conn.execute(
                "DELETE FROM embedkeeper.inflight WHERE id = ANY(%s)", (list(tokens),)
            )
