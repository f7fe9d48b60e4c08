"""Claims: which process embeds which document, held in PostgreSQL and dying with the session.

A claim is a session-level advisory lock keyed on (model, document id). It is taken in the same
statement that finds the pending documents (pg_try_advisory_lock skips what a peer holds, so two
processes never embed one document at once) and released after the document's vector or failure
is committed. If the process dies, even by kill -9, its connection closes and PostgreSQL drops
its locks at once: a rerun takes the work over immediately, with no lease to wait out. Nothing is
written when a claim is taken, so a dead claim leaves nothing to clean up.

A claim also re-reads the claimed documents' vectors in a fresh snapshot, because the discovery
statement's snapshot may predate a peer's commit that landed just before its unlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.chunking.chunker import vectors_part
from embedkeeper.records import Claimed, Document, DocumentId
from embedkeeper.store import locks
from embedkeeper.store.locks import claim_space
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.source.queries import Scope, StaleBy

Phase = tuple[Scope, datetime | None]  # where a pass looks, and from which updated_at


@dataclass(frozen=True, slots=True)
class ClaimResult:
    claimed: Claimed
    # updated_at of the pending documents a peer held: a pass must not advance its watermark
    # past them, since the peer may release them unfinished.
    held_by_peers: list[datetime | None]
    # Their ids: a backfill waits for them to be released before it reports (sync/held.py).
    held_ids: list[DocumentId] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRules:
    """What a pass claims, the same for every claim of the pass."""

    stale_by: StaleBy  # what makes an embedded document stale
    retry_failed_now: bool  # ignore failures' retry delay (a backfill)
    prefix_chars: int  # how much of each text to read: what its chunks can hold, with room
    claim_chars: int  # the text one claim may hold (at least one document is claimed)
    chunking: str  # the chunker's fingerprint: a record of other settings is stale
    # Whether records of other settings may exist (the pass's start saw some): if not, the
    # claim compares no record's chunking (PairQueries.claim).
    other_chunking: bool = True


# Claims (locks.key_sql) held by other sessions, read from pg_locks: a two-int4 advisory key
# shows as classid (its space's half) and objid (its item's), objsubid 2.
HELD_BY_OTHERS = sql.SQL("""
    SELECT count(*) FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = {space}::oid
      AND l.objid IN (SELECT {item}::oid FROM unnest(%(ids)s::text[]) AS x)
""").format(
    space=sql.SQL(locks.SINGLE_KEY_SQL.format(space="%(claim_space)s")),
    item=sql.SQL(locks.SINGLE_KEY_SQL.format(space="x")),
)


def claim_batch(
    conn: psycopg.Connection[Any],
    pair: Pair,
    rules: ClaimRules,
    phase: Phase,
    after: Any,
    limit: int,
) -> ClaimResult:
    """One claim in the phase's scope; `after` is the last key returned before (for "changed",
    the pair (updated_at, id)), and the result's last_key is the next call's `after`."""
    scope, since = phase
    after_ts, after_id = after if scope == "changed" and after is not None else (None, after)
    rows = conn.execute(
        pair.statements.claim(
            rules.stale_by,
            after=after is not None,
            scope=scope,
            other_chunking=rules.other_chunking,
        ),
        {
            "model": pair.model_name,
            "after": after_id,
            "after_ts": after_ts,
            "since": since,
            "limit": limit,
            "claim_space": claim_space(pair.source_name, pair.model_name),
            "ignore_delay": rules.retry_failed_now,
            "prefix_chars": rules.prefix_chars,
            "claim_chars": rules.claim_chars,
            "chunking": rules.chunking,
        },
    ).fetchall()
    if not rows:
        return ClaimResult(Claimed([], None), [])
    # Rows come in walk order, so the last row is where the next claim starts.
    last_key = (rows[-1][4], rows[-1][0]) if scope == "changed" else rows[-1][0]
    locked = [
        Document(
            id=r[0], text=r[1], cut=r[2], content_hash=bytes(r[3]), updated_at=r[4], suspect=r[6]
        )
        for r in rows
        if r[5]
    ]
    held = [r[4] for r in rows if not r[5]]
    pending = _still_pending(conn, pair, rules, locked)
    return ClaimResult(Claimed(pending, last_key), held, [r[0] for r in rows if not r[5]])


def _still_pending(
    conn: psycopg.Connection[Any], pair: Pair, rules: ClaimRules, docs: list[Document]
) -> list[Document]:
    if not docs:
        return []
    queries, model = pair.statements, pair.model_name
    rows = conn.execute(queries.existing_vectors(), {"model": model, "ids": [d.id for d in docs]})
    existing: dict[object, tuple[bytes, datetime | None]] = {}
    reusable: set[object] = set()  # records of our vector settings: their passages' vectors
    vectors = vectors_part(rules.chunking)
    for row in rows:
        if row[3] is None or row[3] == rules.chunking:
            existing[row[0]] = (bytes(row[1]), row[2])
        if vectors and row[3] is not None and vectors_part(row[3]) == vectors:
            reusable.add(row[0])
    pending: list[Document] = []
    done: list[Document] = []
    touch: list[Document] = []
    for doc in docs:
        current = existing.get(doc.id)
        if current is None or current[0] != doc.content_hash:
            pending.append(replace(doc, reusable=True) if doc.id in reusable else doc)
        elif _newer(doc.updated_at, current[1]):
            touch.append(doc)
        else:
            done.append(doc)
    if touch:
        conn.execute(
            queries.touch(),
            {
                "model": model,
                "ids": [d.id for d in touch],
                "updated": [d.updated_at for d in touch],
            },
        )
    release(conn, pair, done + touch)
    return pending


def _newer(updated_at: datetime | None, recorded: datetime | None) -> bool:
    return updated_at is not None and (recorded is None or updated_at > recorded)


def release(conn: psycopg.Connection[Any], pair: Pair, docs: Sequence[Document]) -> None:
    if docs:
        conn.execute(
            pair.statements.unlock(),
            {
                "claim_space": claim_space(pair.source_name, pair.model_name),
                "ids": [d.id for d in docs],
            },
        )


def count_held_by_peers(
    conn: psycopg.Connection[Any], pair: Pair, ids: Sequence[DocumentId]
) -> int:
    """How many of these documents another session holds a claim on now (pg_locks: an
    advisory lock on two int4 keys shows them as classid and objid, objsubid 2)."""
    if not ids:
        return 0
    row = conn.execute(
        HELD_BY_OTHERS,
        {
            "claim_space": claim_space(pair.source_name, pair.model_name),
            "ids": [str(i) for i in ids],
        },
    ).fetchone()
    return int(row[0]) if row else 0
