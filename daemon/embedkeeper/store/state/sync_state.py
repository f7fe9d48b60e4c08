"""What the last complete pass of a model saw, so that the next scheduled pass costs the change,
not the table (embedkeeper.sync_state, one row per (source, model) pair).

- The watermark: the newest `updated_at_column` value a complete pass had covered. A scheduled
  pass then walks the updated_at index from `watermark - watermark_lag` only. The lag covers a
  transaction that commits after a later one (its rows carry an earlier updated_at) and writers
  whose clocks differ. A pass advances the watermark only if it drained everything it looked at,
  never past a document a peer held locked while it walked (that peer may still release it), and
  only if nobody moved the watermark meanwhile (compare and set).
- The table fingerprint: the source table's file node and its count of deleted rows (PostgreSQL's
  cumulative statistics). While it is unchanged nothing was deleted or truncated, and a scheduled
  pass skips the prune, which is a scan of the model's vectors. No fingerprint (a view, a
  partitioned table, track_counts off) means: prune every pass.

Both belong to the [source] settings they were taken under (`source_signature`): a different
table, key, text or filter starts over with a full walk. The content-hash sweep and every backfill
walk everything and prune unconditionally; they are the net under both shortcuts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from embedkeeper.config import SourceConfig
from embedkeeper.store.pair.pair import Pair


@dataclass(frozen=True, slots=True)
class SyncState:
    signature: str | None  # None: no row yet
    watermark: datetime | None
    fingerprint: str | None
    swept_at: datetime | None = None
    # The delete log (store/pass_io/delete_log.py): the last entry pruned, the deleted-row counter
    # at
    # the last full prune, and the entries pruned since then.
    log_position: int | None = None
    deletes_baseline: int | None = None
    deletes_logged: int | None = None

    def since(self, source: SourceConfig) -> datetime | None:
        """Where a scheduled pass starts its walk of the updated_at index; None: walk all."""
        if self.watermark is None or not source.updated_at_column:
            return None
        if self.signature != source_signature(source):
            return None
        return self.watermark - timedelta(seconds=source.watermark_lag_s)


def source_signature(source: SourceConfig) -> str:
    """The settings that decide which rows are documents and what their text is."""
    settings = asdict(source)
    settings.pop("watermark_lag_s")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load(conn: psycopg.Connection[Any], pair: Pair) -> SyncState:
    row = conn.execute(
        "SELECT source_signature, watermark, table_fingerprint, swept_at, delete_log_position,"
        " deletes_baseline, deletes_logged FROM embedkeeper.sync_state"
        " WHERE source = %s AND model = %s",
        (pair.source_name, pair.model_name),
    ).fetchone()
    return SyncState(None, None, None) if row is None else SyncState(*row)


def record_sweep(conn: psycopg.Connection[Any], pair: Pair) -> None:
    """A content-hash sweep of everything drained: the next one is due sweep_interval later."""
    conn.execute(
        "UPDATE embedkeeper.sync_state SET swept_at = now() WHERE source = %s AND model = %s",
        (pair.source_name, pair.model_name),
    )


def table_fingerprint(conn: psycopg.Connection[Any], source: SourceConfig) -> str | None:
    """The plain table's file node (TRUNCATE changes it) and deleted-row count, or None."""
    row = conn.execute(
        """
        SELECT CASE WHEN c.relkind = 'r' AND current_setting('track_counts')::boolean
                    THEN concat_ws(':', c.oid, pg_relation_filenode(c.oid),
                                   pg_stat_get_tuples_deleted(c.oid)) END
        FROM pg_class AS c
        WHERE c.oid = to_regclass(CASE WHEN %(schema)s::text IS NULL THEN quote_ident(%(table)s)
                           ELSE quote_ident(%(schema)s) || '.' || quote_ident(%(table)s) END)
        """,
        {"schema": source.schema, "table": source.table},
    ).fetchone()
    return None if row is None else row[0]


def deleted_count(fingerprint: str | None) -> int | None:
    """The deleted-row counter a fingerprint holds."""
    if fingerprint is None:
        return None
    return int(fingerprint.rsplit(":", 1)[1])


def same_file(a: str | None, b: str | None) -> bool:
    """Both fingerprints are of the same table file (no TRUNCATE or rewrite between them)."""
    return a is not None and b is not None and a.rsplit(":", 1)[0] == b.rsplit(":", 1)[0]


def save_fingerprint(
    conn: psycopg.Connection[Any],
    pair: Pair,
    fingerprint: str | None,
    log_position: int | None = None,
) -> None:
    """After a full prune: the fingerprint read before it (a delete that lands meanwhile changes
    the counters again, so the next pass prunes once more), and with the delete log followed,
    the log's position read before that: the baseline the log is checked against from now on."""
    conn.execute(
        """
        INSERT INTO embedkeeper.sync_state AS s (source, model, source_signature,
            table_fingerprint, delete_log_position, deletes_baseline, deletes_logged)
        VALUES (%(source)s, %(model)s, %(signature)s, %(fingerprint)s, %(position)s, %(baseline)s,
            CASE WHEN %(position)s::bigint IS NOT NULL THEN 0 END)
        ON CONFLICT (source, model) DO UPDATE SET table_fingerprint = excluded.table_fingerprint,
            delete_log_position = excluded.delete_log_position,
            deletes_baseline = excluded.deletes_baseline,
            deletes_logged = excluded.deletes_logged,
            updated_at = now()
        WHERE s.source_signature = excluded.source_signature
        """,
        {
            "source": pair.source_name,
            "model": pair.model_name,
            "signature": source_signature(pair.source),
            "fingerprint": fingerprint,
            "position": log_position,
            "baseline": deleted_count(fingerprint) if log_position is not None else None,
        },
    )


def advance_watermark(
    conn: psycopg.Connection[Any],
    pair: Pair,
    seen: SyncState,
    watermark: datetime | None,
) -> bool:
    """Set the watermark if the row is still as this pass read it at its start (compare and
    set); a row under other [source] settings is replaced. Returns whether it was set."""
    row = conn.execute(
        """
        INSERT INTO embedkeeper.sync_state AS s (source, model, source_signature, watermark)
        VALUES (%(source)s, %(model)s, %(signature)s, %(watermark)s)
        ON CONFLICT (source, model) DO UPDATE SET
            source_signature = excluded.source_signature, watermark = excluded.watermark,
            table_fingerprint = CASE WHEN s.source_signature = excluded.source_signature
                                     THEN s.table_fingerprint END,
            updated_at = now()
        WHERE s.source_signature IS DISTINCT FROM excluded.source_signature
           OR (s.source_signature IS NOT DISTINCT FROM %(seen_signature)s
               AND s.watermark IS NOT DISTINCT FROM %(seen_watermark)s)
        RETURNING 1
        """,
        {
            "source": pair.source_name,
            "model": pair.model_name,
            "signature": source_signature(pair.source),
            "watermark": watermark,
            "seen_signature": seen.signature,
            "seen_watermark": seen.watermark,
        },
    ).fetchone()
    return row is not None
