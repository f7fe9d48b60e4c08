"""Every advisory-lock key embedkeeper takes, defined here once.

A key is two int4: hashtext(space) and hashtext(item). Claims are session-level locks on
(claims of the model, document id), so they die with the session; the others serialize one
piece of housekeeping across instances. A document may be embedded for two models at once,
hence a claim space per model.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg

# The advisory-lock functions we call: xact ones end with the transaction, the others with the
# session (claims, the shared index lock a deferring backfill holds).
LockFunction = Literal[
    "pg_advisory_xact_lock",
    "pg_try_advisory_xact_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock_shared",
]

# A key of two int4 in SQL: `space` and `item` are SQL expressions of text (a parameter, a
# column). Statements that lock many rows at once (claims) embed it; one lock goes by take().
KEY_SQL = "hashtext({space}), hashtext({item})"
# One int4 of one text: for locks that have no item (a migration, the demo's corpus).
SINGLE_KEY_SQL = "hashtext({space})"

PRUNE = "embedkeeper:prune"  # (PRUNE, pair_key): one instance prunes a model at a time
INDEX = "embedkeeper:index"  # (INDEX, model): a deferring backfill holds it shared
MIGRATE = "embedkeeper:migrate"  # one migration at a time (alembic/env.py)
DEMO = "embedkeeper:demo"  # one demo corpus load at a time
PAIRS = "embedkeeper:pairs"  # (PAIRS, base name): one instance makes a pair's tables at a time
SERVING = (
    "embedkeeper:serving"  # (SERVING, source): one switch of a source's serving view at a time
)


def claim_space(source: str, model: str) -> str:
    """The space of a (source, model) pair's claims: (claim_space(source, model), document id).
    The source is in it because two sources' keys may be equal."""
    return f"embedkeeper:{source}:{model}"


def pair_key(source: str, model: str) -> str:
    """The second half of a housekeeping lock held per (source, model) pair."""
    return f"{source}:{model}"


def key_sql(space: str, item: str) -> str:
    """The two-int4 key of `space` and `item`, both our own SQL expressions (never user text)."""
    return KEY_SQL.format(space=space, item=item)


def take(
    conn: psycopg.Connection[Any], function: LockFunction, space: str, item: str | None = None
) -> bool:
    """Call an advisory-lock function on (space, item), or on space alone; what it returned
    (a try_ function's True when the lock was free; True for the others)."""
    key = key_sql("%s", "%s") if item is not None else SINGLE_KEY_SQL.format(space="%s")
    params = (space, item) if item is not None else (space,)
    row = conn.execute(f"SELECT {function}({key})", params).fetchone()
    return row is None or row[0] is None or bool(row[0])
