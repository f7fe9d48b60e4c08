"""PgStore: the pipeline's Store on one PostgreSQL connection (its claims live in that session)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from daemon.claims import claim_batch, release
from daemon.config import RetryConfig
from daemon.db import mapped_errors
from daemon.documents import Document, Embedded, Rejected
from daemon.pipeline import Claimed
from daemon.queries import Scope, SourceQueries, StaleBy
from daemon.writer import Writer

Phase = tuple[Scope, datetime | None]  # where a pass looks, and from which updated_at


class PgStore:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        queries: SourceQueries,
        *,
        model: str,
        retry: RetryConfig,
        stale_by: StaleBy,
        ignore_retry_delay: bool,
        prefix_chars: int,
        phases: Sequence[Phase] = (("all", None),),
    ) -> None:
        self.conn = conn
        self.queries = queries
        self.model = model
        self.retry = retry
        self.stale_by: StaleBy = stale_by
        self.ignore_retry_delay = ignore_retry_delay
        self.prefix_chars = prefix_chars
        self.phases = list(phases)
        self.open_tokens: set[int] = set()  # in-flight records not yet closed
        self.held_by_peers: list[datetime | None] = []
        with mapped_errors("preparing the writer"):
            self.writer = Writer(conn, queries, model)

    def claim(self, after: object | None, limit: int) -> Claimed:
        """Claim in the pass's phases in turn; the cursor is (phase, key within the phase)."""
        phase, key = after if isinstance(after, tuple) else (0, None)
        while phase < len(self.phases):
            scope, since = self.phases[phase]
            with mapped_errors("claiming documents"):
                result = claim_batch(
                    self.conn,
                    self.queries,
                    model=self.model,
                    after=key,
                    limit=limit,
                    stale_by=self.stale_by,
                    ignore_retry_delay=self.ignore_retry_delay,
                    prefix_chars=self.prefix_chars,
                    scope=scope,
                    since=since,
                )
            self.held_by_peers += result.held_by_peers
            if result.claimed.last_key is not None:
                return Claimed(
                    result.claimed.documents,
                    (phase, result.claimed.last_key),
                    held=len(result.held_by_peers),
                )
            phase, key = phase + 1, None
        return Claimed([], None)

    def save(self, embedded: Sequence[Embedded]) -> int:
        with mapped_errors("writing vectors"):
            return self.writer.save(embedded)

    def fail(self, rejected: Sequence[Rejected]) -> None:
        with mapped_errors("recording failures"):
            self.writer.fail(rejected, self.retry)

    def begin(self, documents: Sequence[Document]) -> int:
        with mapped_errors("recording a batch in flight"):
            token = self.writer.begin(documents)
        self.open_tokens.add(token)
        return token

    def end(self, token: int) -> None:
        with mapped_errors("closing a batch in flight"):
            self.writer.end(token)
        self.open_tokens.discard(token)

    def forget(self, tokens: set[int]) -> None:
        """Our own in-flight records from a session we lost: no crash, nobody to charge."""
        with mapped_errors("forgetting batches of a lost session"):
            self.writer.forget(sorted(tokens))

    def recover_crashed(self) -> int:
        with mapped_errors("charging batches of dead processes"):
            return self.writer.recover_crashed(self.retry)

    def release(self, documents: Sequence[Document]) -> None:
        if self.conn.closed:
            return  # the claims died with the session
        with mapped_errors("releasing claims"):
            release(self.conn, self.queries, self.model, documents)
