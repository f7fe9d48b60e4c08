"""What each pair holds on disk and when it last ran: for `embedkeeper models`, beside coverage.

Read from the catalog and `embedkeeper.runs` (by its (source, model, started_at) index), never
the source: the size of the pair's three tables with their indexes and TOAST, and the newest
finished pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.tables import PairNames


@dataclass(frozen=True, slots=True)
class PairFootprint:
    """`size_bytes`: 0 when the tables do not exist; `last_pass_at`, `last_status`: None
    before any pass finished."""

    size_bytes: int
    last_pass_at: datetime | None
    last_status: str | None


def footprint(conn: psycopg.Connection[Any], names: PairNames) -> PairFootprint:
    tables = [t.as_string(conn) for t in (names.documents, names.chunks, names.failures)]
    with mapped_errors(f"measuring the pair {names.source}/{names.model}"):
        size = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)"
            " FROM unnest(%s::text[]) AS t",
            (tables,),
        ).fetchone()
        last = conn.execute(
            "SELECT finished_at, status FROM embedkeeper.runs WHERE source = %s AND model = %s"
            " AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
            (names.source, names.model),
        ).fetchone()
    return PairFootprint(
        int(size[0]) if size else 0,
        last[0] if last else None,
        str(last[1]) if last else None,
    )
