"""Throughput figures from `embedkeeper.runs`: what `embedkeeper stats` reports per model.

Every statement reads only one model's rows in the window (by runs_model_started_idx), or walks
that index backwards for the newest successful pass, so the cost follows the window, not the
history or the source. Rates (docs/s, tokens/s) are taken over the passes that embedded at least
one document: a scheduled pass that finds nothing to do has a rate of 0 that says nothing about
the model's speed. `tokens` and `chunks_embedded` are what the model was sent; `tokens_reused` and
`chunks_reused` what the documents kept of their stored vectors (0 in rows from before alembic
0010).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from embedkeeper.store.db import mapped_errors

# The window: one pair's rows by runs_pair_started_idx. Rates come from finished passes that
# embedded something.
BY_STATUS = """
SELECT status, count(*), coalesce(sum(docs_ok), 0), coalesce(sum(docs_failed), 0),
       coalesce(sum(tokens), 0), coalesce(sum(tokens_reused), 0),
       coalesce(sum(chunks_embedded), 0), coalesce(sum(chunks_reused), 0)
FROM embedkeeper.runs
WHERE source = %(source)s AND model = %(model)s
  AND started_at >= now() - make_interval(secs => %(since_s)s)
GROUP BY status
"""
MEDIANS = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY docs_per_s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY tokens_per_s)
FROM embedkeeper.runs
WHERE source = %(source)s AND model = %(model)s
  AND started_at >= now() - make_interval(secs => %(since_s)s)
  AND docs_ok > 0 AND finished_at IS NOT NULL
"""
RECENT = """
SELECT id, started_at, finished_at, docs_ok, coalesce(docs_per_s, 0), coalesce(tokens_per_s, 0),
       tokens, tokens_reused, chunks_embedded, chunks_reused
FROM embedkeeper.runs
WHERE source = %(source)s AND model = %(model)s
  AND started_at >= now() - make_interval(secs => %(since_s)s)
  AND docs_ok > 0 AND finished_at IS NOT NULL
ORDER BY started_at DESC, id DESC LIMIT %(recent)s
"""
LAST_SUCCESS = """
SELECT finished_at, extract(epoch FROM now() - finished_at)
FROM embedkeeper.runs WHERE source = %(source)s AND model = %(model)s AND status = 'ok'
ORDER BY started_at DESC LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class PassRate:
    """One pass that embedded documents, and how fast it went."""

    run_id: int
    started_at: datetime
    finished_at: datetime
    docs_ok: int
    docs_per_s: float
    tokens_per_s: float
    tokens: int = 0  # sent to the model
    tokens_reused: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One model's passes in the window."""

    model: str
    since_s: float
    passes: dict[str, int] = field(default_factory=dict)  # by status
    docs_embedded: int = 0
    docs_failed: int = 0
    tokens: int = 0
    median_docs_per_s: float | None = None
    median_tokens_per_s: float | None = None
    recent: tuple[PassRate, ...] = ()  # passes that embedded, oldest first
    last_success_at: datetime | None = None  # the newest `ok` pass, in the window or not
    last_success_age_s: float | None = None
    tokens_reused: int = 0  # `tokens` is what the model was sent; these were kept
    chunks_embedded: int = 0
    chunks_reused: int = 0

    @property
    def last(self) -> PassRate | None:
        """The newest pass that embedded documents."""
        return self.recent[-1] if self.recent else None


def run_figures(
    conn: psycopg.Connection[Any], source: str, model: str, since_s: float, recent: int = 30
) -> RunFigures:
    """The pair's figures over the last `since_s` seconds; `recent` passes for the chart."""
    params = {"source": source, "model": model, "since_s": since_s, "recent": recent}
    with mapped_errors("reading embedkeeper.runs"):
        by_status = conn.execute(BY_STATUS, params).fetchall()
        medians = conn.execute(MEDIANS, params).fetchone()
        rates = conn.execute(RECENT, params).fetchall()
        success = conn.execute(LAST_SUCCESS, params).fetchone()
    assert medians is not None
    return RunFigures(
        model=model,
        since_s=since_s,
        passes={str(r[0]): int(r[1]) for r in sorted(by_status)},
        docs_embedded=sum(int(r[2]) for r in by_status),
        docs_failed=sum(int(r[3]) for r in by_status),
        tokens=sum(int(r[4]) for r in by_status),
        tokens_reused=sum(int(r[5]) for r in by_status),
        chunks_embedded=sum(int(r[6]) for r in by_status),
        chunks_reused=sum(int(r[7]) for r in by_status),
        median_docs_per_s=None if medians[0] is None else float(medians[0]),
        median_tokens_per_s=None if medians[1] is None else float(medians[1]),
        recent=tuple(
            PassRate(int(r[0]), r[1], r[2], int(r[3]), float(r[4]), float(r[5]), *map(int, r[6:]))
            for r in reversed(rates)
        ),
        last_success_at=success[0] if success else None,
        last_success_age_s=float(success[1]) if success else None,
    )
