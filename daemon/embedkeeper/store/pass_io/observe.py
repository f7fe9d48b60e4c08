"""What a pass reads at its start, in one place: the model's sync state, the newest updated_at,
the delete log's position and the table's fingerprint. sync/plan.py decides from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pass_io import delete_log
from embedkeeper.store.state import sync_state
from embedkeeper.store.state.sync_state import SyncState


@dataclass(frozen=True, slots=True)
class Observed:
    seen: SyncState
    newest: datetime | None  # the newest updated_at in the table: the watermark a drained pass sets
    log_position: int | None  # None: the source's deletes are not logged
    fingerprint: str | None
    rechunk: bool = False  # some records were chunked with other settings: walk everything


def observe(conn: psycopg.Connection[Any], pair: Pair, chunking: str | None = None) -> Observed:
    """`chunking`: the model's chunker fingerprint (None: not asked)."""
    source, queries = pair.source, pair.statements
    with mapped_errors("reading the sync state"):
        seen = sync_state.load(conn, pair)
        # Without the column there is nothing to read (and max() of NULLs would scan the table).
        newest = (
            conn.execute(queries.newest_update()).fetchone() if source.updated_at_column else None
        )
        # The log's position first: every entry up to it is then in the counter read after it.
        log_at = delete_log.position(conn, source)
        fingerprint = sync_state.table_fingerprint(conn, source)
        rechunk = False
        if chunking is not None:
            row = conn.execute(queries.other_chunking_exists(), {"chunking": chunking}).fetchone()
            rechunk = bool(row and row[0])
    return Observed(seen, newest[0] if newest else None, log_at, fingerprint, rechunk)
