"""The delete log: with `embedkeeper deletes track`, a trigger on the source table records the keys
of deleted rows in embedkeeper.deleted_documents, so that a scheduled pass after deletes prunes
those keys instead of reading every key of the model's vectors (an anti-join that follows the
table: 0.3 to 0.5 s per million vectors on a small machine).

It is opt-in because it changes the user's table (a trigger: creating it needs the table owner's
rights); embedkeeper itself still writes nothing there. The trigger is statement-level with a
transition table, so a DELETE of many rows costs one INSERT ... SELECT.

The log is trusted only while it accounts for every delete: the table's deleted-row counter
(PostgreSQL's statistics), less its value at the model's last full prune, must not exceed the
entries pruned since plus those pending. A delete the trigger did not see (the trigger disabled,
`session_replication_role = replica` as in logical replication, or a rolled-back delete, which
the counter still counts) leaves the log short, and the pass falls back to the full prune, which
sets a new baseline. A TRUNCATE changes the table's file node, which also brings the full prune.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.config import SourceConfig
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.source.queries import table_identifier
from embedkeeper.store.state.sync_state import SyncState, deleted_count, same_file, source_signature

TRIGGER = "embedkeeper_log_deletes"
LOG = sql.SQL("embedkeeper.deleted_documents")


def log_name(source: SourceConfig) -> str:
    """How the log names the source (the trigger's first argument)."""
    return f"{source.schema}.{source.table}" if source.schema else source.table


def track(conn: psycopg.Connection[Any], source: SourceConfig) -> None:
    conn.execute(
        sql.SQL(
            "CREATE OR REPLACE TRIGGER {trigger} AFTER DELETE ON {table}"
            " REFERENCING OLD TABLE AS embedkeeper_gone FOR EACH STATEMENT"
            " EXECUTE FUNCTION embedkeeper.log_deleted_documents({name}, {key})"
        ).format(
            trigger=sql.Identifier(TRIGGER),
            table=table_identifier(source),
            name=sql.Literal(log_name(source)),
            key=sql.Literal(source.id_column),
        )
    )


def untrack(conn: psycopg.Connection[Any], source: SourceConfig) -> None:
    with conn.transaction():
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {trigger} ON {table}").format(
                trigger=sql.Identifier(TRIGGER), table=table_identifier(source)
            )
        )
        conn.execute(
            sql.SQL("DELETE FROM {log} WHERE source_table = %s").format(log=LOG),
            (log_name(source),),
        )


def position(conn: psycopg.Connection[Any], source: SourceConfig) -> int | None:
    """The newest entry for the source (0: none), or None if deletes are not logged: the trigger
    is missing or does not fire in ordinary sessions (it must be enabled, or enabled always).
    Read before the table's fingerprint, so that every entry up to it is also in the counter
    the fingerprint holds."""
    row = conn.execute(
        sql.SQL(
            """
            SELECT CASE WHEN EXISTS (
                SELECT 1 FROM pg_trigger
                WHERE tgrelid = to_regclass(%(table)s) AND tgname = %(trigger)s
                  AND tgenabled IN ('O', 'A'))
            THEN (SELECT coalesce(max(id), 0) FROM {log} WHERE source_table = %(name)s) END
            """
        ).format(log=LOG),
        {
            "table": table_identifier(source).as_string(conn),
            "trigger": TRIGGER,
            "name": log_name(source),
        },
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def is_tracking(conn: psycopg.Connection[Any], source: SourceConfig) -> bool:
    return position(conn, source) is not None


@dataclass(frozen=True, slots=True)
class LogPrune:
    """What the log says for one model: the entries after its position, up to `upto`."""

    after: int
    upto: int
    entries: int


def covering(
    conn: psycopg.Connection[Any],
    source: SourceConfig,
    seen: SyncState,
    fingerprint: str | None,
    upto: int,
) -> LogPrune | None:
    """The log's entries for this model if they account for every delete since its last full
    prune; None if the log cannot be trusted (then the full prune runs)."""
    if (
        seen.log_position is None
        or seen.deletes_baseline is None
        or not same_file(seen.fingerprint, fingerprint)
    ):
        return None
    counted = deleted_count(fingerprint)
    if counted is None:
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {log} WHERE source_table = %s AND id > %s AND id <= %s"
        ).format(log=LOG),
        (log_name(source), seen.log_position, upto),
    ).fetchone()
    entries = int(row[0]) if row else 0
    if counted - seen.deletes_baseline > (seen.deletes_logged or 0) + entries:
        return None
    return LogPrune(seen.log_position, upto, entries)


def prune_from_log(
    conn: psycopg.Connection[Any],
    pair: Pair,
    fingerprint: str | None,
    logged: LogPrune,
) -> int | None:
    """In one transaction: move the model's position past the entries (compare and set: None if
    a peer already has), prune their keys, and drop the entries every model has pruned."""
    queries, model = pair.statements, pair.model_name
    with conn.transaction():
        moved = conn.execute(
            """
            UPDATE embedkeeper.sync_state SET table_fingerprint = %(fingerprint)s,
                delete_log_position = %(upto)s, deletes_logged = deletes_logged + %(entries)s,
                updated_at = now()
            WHERE source = %(source)s AND model = %(model)s
              AND source_signature = %(signature)s
              AND delete_log_position = %(after)s
            RETURNING 1
            """,
            {
                "source": queries.source.source_name,
                "model": model,
                "signature": source_signature(queries.source),
                "fingerprint": fingerprint,
                "after": logged.after,
                "upto": logged.upto,
                "entries": logged.entries,
            },
        ).fetchone()
        if moved is None:
            return None
        row = conn.execute(
            queries.prune_logged(),
            {
                "name": log_name(queries.source),
                "after": logged.after,
                "upto": logged.upto,
                "model": model,
            },
        ).fetchone()
        pruned = int(row[0]) if row else 0
        forget_pruned(conn, queries.source)
    return pruned


def forget_pruned(conn: psycopg.Connection[Any], source: SourceConfig) -> None:
    """Drop the entries every model that follows the log has pruned. A model whose state has
    not moved for a week (removed from the config, say) does not hold the log back: should it
    come back, it finds the log short and prunes in full."""
    conn.execute(
        sql.SQL(
            "DELETE FROM {log} WHERE source_table = %s AND id <= ("
            " SELECT min(delete_log_position) FROM embedkeeper.sync_state"
            " WHERE source = %s AND delete_log_position IS NOT NULL"
            " AND updated_at > now() - interval '7 days')"
        ).format(log=LOG),
        (log_name(source), source.source_name),
    )
