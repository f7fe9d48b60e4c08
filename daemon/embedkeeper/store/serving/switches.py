"""Which model serves each source, and the history of the switches (`embedkeeper.switches`).

The newest row of a source names its serving model; each row is written in the transaction that
points the serving view (serving_view.py), so the table and what readers see never disagree.
`migrate` writes a source's first row (from_model NULL), `switch` the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from embedkeeper.errors import DatabaseError, EmbedkeeperError
from embedkeeper.store import locks
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.serving.serving_view import point_serving_view

LOCK_TIMEOUT_S = 5.0  # how long a switch waits for the queries under way on the view
_SERVING = "SELECT to_model FROM embedkeeper.switches WHERE source = %s ORDER BY id DESC LIMIT 1"


@dataclass(frozen=True, slots=True)
class Switch:
    """One row of the history. `from_model` None: the first serving model, set by `migrate`;
    `missing`: the documents the pair lacked when `switch --force` made it serve."""

    source: str
    from_model: str | None
    to_model: str
    switched_at: datetime
    switched_by: str
    missing: int

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "from_model": self.from_model,
            "to_model": self.to_model,
            "switched_at": self.switched_at.isoformat(),
            "switched_by": self.switched_by,
            "missing": self.missing,
        }


def serving_model(conn: psycopg.Connection[Any], source: str) -> str | None:
    """The model that serves the source now; None before `migrate` made its serving view."""
    with mapped_errors(f"reading the serving model of {source}"):
        row = conn.execute(_SERVING, (source,)).fetchone()
    return None if row is None else str(row[0])


class SwitchRaced(EmbedkeeperError):
    """Another switch of this source ran meanwhile; run the command again."""


class ViewBusy(EmbedkeeperError):
    """A long query holds the serving view; the switch gave up rather than hold searches."""


def switch_to(
    conn: psycopg.Connection[Any],
    names: PairNames,
    *,
    expected: str,
    missing: int = 0,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> None:
    """Point the source's serving view at the pair and record the switch, in one transaction:
    a reader sees the old pair or the new. `expected`: the serving model the caller checked
    against; another switch that moved it meanwhile makes this one stop, changing nothing.

    The swap's lock waits for the queries under way on the view, and every search that starts
    meanwhile queues behind it: a report that has read the view for minutes would hold search
    that long. So it waits `lock_timeout_s` at most, then gives up, changing nothing."""
    source = names.source
    try:
        with mapped_errors(f"switching the serving view of {source}"), conn.transaction():
            # Two switches of one source at once: the second waits, then finds the first's row.
            locks.take(conn, "pg_advisory_xact_lock", locks.SERVING, source)
            now = _serving(conn, source)
            if now != expected:
                raise SwitchRaced(
                    f'another switch of source "{source}" ran meanwhile (model "{now}" serves'
                    " it now); run the command again"
                )
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true)",
                (f"{round(lock_timeout_s * 1000)}ms",),
            )
            point_serving_view(conn, source, names)
            _record(conn, source, now, names.model, missing)
    except DatabaseError as exc:
        if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise ViewBusy(
                f"a query has held embedkeeper.{source} for over {lock_timeout_s:g} s, so the"
                " switch gave up rather than hold the searches queued behind it (nothing"
                " changed); run it again, or end that query (pg_stat_activity)"
            ) from exc
        raise


def settle_serving(conn: psycopg.Connection[Any], source: str, first: str) -> tuple[str, bool]:
    """`migrate`'s part: make the source's serving view, showing `first` where no model serves
    it yet (and record that), else the model that serves it, made again (so it follows its
    pair's view: a full_text column added). Returns the serving model and whether it was set
    just now."""
    with mapped_errors(f"making the serving view of {source}"), conn.transaction():
        locks.take(conn, "pg_advisory_xact_lock", locks.SERVING, source)
        now = _serving(conn, source)
        point_serving_view(conn, source, PairNames.of(source, now or first))
        if now is None:
            _record(conn, source, None, first, 0)
    return now or first, now is None


def _serving(conn: psycopg.Connection[Any], source: str) -> str | None:
    row = conn.execute(_SERVING, (source,)).fetchone()
    return None if row is None else str(row[0])


def _record(
    conn: psycopg.Connection[Any], source: str, old: str | None, new: str, missing: int
) -> None:
    conn.execute(
        "INSERT INTO embedkeeper.switches (source, from_model, to_model, missing)"
        " VALUES (%s, %s, %s, %s)",
        (source, old, new, missing),
    )


def recent_switches(
    conn: psycopg.Connection[Any], source: str | None = None, limit: int = 10
) -> list[Switch]:
    """The newest switches first, of one source or of all."""
    with mapped_errors("reading the switches"):
        rows = conn.execute(
            "SELECT source, from_model, to_model, switched_at, switched_by, missing"
            " FROM embedkeeper.switches WHERE %(source)s::text IS NULL OR source = %(source)s"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"source": source, "limit": limit},
        ).fetchall()
    return [Switch(str(r[0]), r[1], str(r[2]), r[3], str(r[4]), int(r[5])) for r in rows]
