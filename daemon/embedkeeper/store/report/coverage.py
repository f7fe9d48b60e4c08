"""Coverage figures: how much of the source has a current vector, per model.

total: documents in scope ([source] where); skipped: NULL or blank text; embedded: documents with a
vector; stale: of those, vectors of a text that has changed since; failed: in review; ignored:
taken out of review by `failures ignore`; pending: still to do.
coverage_percent = (embedded - stale) / (total - skipped) * 100 (100 when nothing is embeddable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair


@dataclass(frozen=True, slots=True)
class Coverage:
    model: str
    total: int
    embedded: int
    stale: int
    pending: int
    failed: int
    ignored: int
    skipped: int
    source: str = ""
    chunks: int = 0  # the chunks of the documents embedded (current or stale)
    truncated: int = 0  # embedded documents with text left out (chunking "none", max_chunks)

    @property
    def coverage_percent(self) -> float:
        embeddable = self.total - self.skipped
        if embeddable <= 0:
            return 100.0
        return round((self.embedded - self.stale) / embeddable * 100, 2)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "coverage_percent": self.coverage_percent}


def measure(conn: psycopg.Connection[Any], pair: Pair, chunking: str) -> Coverage:
    """`chunking`: the model's chunker fingerprint; a record made with other settings is stale."""
    with mapped_errors("measuring coverage"):
        row = conn.execute(
            pair.statements.coverage(), {"model": pair.model_name, "chunking": chunking}
        ).fetchone()
    assert row is not None
    total, skipped, embedded, stale, failed, ignored, pending, chunks, truncated = (
        int(v) for v in row
    )
    return Coverage(
        source=pair.source_name,
        model=pair.model_name,
        chunks=chunks,
        truncated=truncated,
        total=total,
        embedded=embedded,
        stale=stale,
        pending=pending,
        failed=failed,
        ignored=ignored,
        skipped=skipped,
    )


def measure_unmade(conn: psycopg.Connection[Any], pair: Pair) -> Coverage:
    """The coverage of a pair whose tables do not exist yet: nothing embedded, every document
    with a text pending. Read without making the tables (a read path runs no DDL)."""
    with mapped_errors("measuring coverage"):
        row = conn.execute(pair.statements.count_with_blank(), {}).fetchone()
    assert row is not None
    total, skipped = int(row[0]), int(row[1])
    return Coverage(
        source=pair.source_name,
        model=pair.model_name,
        total=total,
        embedded=0,
        stale=0,
        pending=total - skipped,
        failed=0,
        ignored=0,
        skipped=skipped,
    )
