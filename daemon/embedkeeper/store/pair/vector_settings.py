"""The settings a pair's vectors are made with, bound to the pair.

embedkeeper.pairs.vector_settings records them, readable (chunking/for_model.py
vector_settings). A config that changes any of them under the same model name is refused at
start (open_app, every command, `migrate` included), naming each setting old -> new and the two
ways out: a new model name and `embedkeeper switch` (the old vectors keep serving until the new
pair is complete), or `embedkeeper migrate --reembed SOURCE MODEL`, which adopts them in place
(search then mixes the two vector spaces until every record is embedded again). Adopting them
silently, as the chunking fingerprint alone did, mixed the spaces without anyone deciding to.

A pair recorded before alembic 0012 has none (NULL) until `migrate` fills them from the config,
without complaint: nothing older says what they were.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from embedkeeper.chunking.for_model import vector_settings
from embedkeeper.config import ModelConfig
from embedkeeper.errors import ConfigError
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.tables import PairNames

Settings = dict[str, Any]

_SELECT = "SELECT vector_settings FROM embedkeeper.pairs WHERE source = %s AND model = %s"


class VectorSettingsChanged(ConfigError):
    """The config makes a pair's vectors with other settings than its stored vectors were made
    with, under the same model name (exit code 1, as every ConfigError)."""


def settings_of(model: ModelConfig) -> Settings:
    """The model's vector settings as the database stores them (a JSON round trip, so that a
    recorded value and the config's compare equal)."""
    loaded: Settings = json.loads(json.dumps(vector_settings(model), default=str))
    return loaded


def changes(old: Settings, new: Settings) -> list[str]:
    """Each setting that differs, as `name old -> new`, in a stable order."""
    keys = sorted(set(old) | set(new))
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _refusal(changed: list[tuple[PairNames, Settings, Settings]]) -> VectorSettingsChanged:
    """One line for every pair the config changes: `--reembed` names each, since a `migrate`
    that adopted one would be refused for the others (a model that embeds several sources)."""
    said = "; ".join(
        f'source "{names.source}", model "{names.model}" ({"; ".join(changes(old, new))})'
        for names, old, new in changed
    )
    first = changed[0][0]
    reembed = " ".join(f"--reembed {names.source} {names.model}" for names, _, _ in changed)
    return VectorSettingsChanged(
        f"config: the config changes the settings these pairs' vectors are made with: {said};"
        " either give [[models]] a new name, let it embed beside the old vectors and run"
        f" `embedkeeper switch {first.source} NEWNAME`, or run `embedkeeper migrate {reembed}`"
        " to embed again in place (search mixes the two vector spaces until every document is"
        " embedded again); or restore the old settings"
    )


def recorded(conn: psycopg.Connection[Any], names: PairNames, *, lock: bool = False) -> Any:
    """The pair's row's settings: None where unrecorded, `...` where the pair has no row."""
    statement = _SELECT + (" FOR UPDATE" if lock else "")
    with mapped_errors(f"reading the pair {names.source}/{names.model}"):
        row = conn.execute(statement, (names.source, names.model)).fetchone()
    return ... if row is None else row[0]


def check_vector_settings(
    conn: psycopg.Connection[Any], pairs: list[tuple[PairNames, Settings]]
) -> None:
    """Refuse a config whose vector settings differ from a pair's recorded ones, naming every
    such pair. A pair not made yet, or recorded before 0012 (none), passes. Reads only, in one
    statement whatever the number of pairs (it runs at every command's start)."""
    with mapped_errors("reading the pairs' vector settings"):
        rows = conn.execute(
            "SELECT source, model, vector_settings FROM embedkeeper.pairs"
            " WHERE vector_settings IS NOT NULL"
        ).fetchall()
    stored = {(str(source), str(model)): old for source, model, old in rows}
    changed = []
    for names, mine in pairs:
        old = stored.get((names.source, names.model))
        if old is not None and old != mine:
            changed.append((names, old, mine))
    if changed:
        raise _refusal(changed)


def adopt_vector_settings(
    conn: psycopg.Connection[Any], names: PairNames, mine: Settings, *, reembed: bool
) -> Settings | None:
    """`migrate`'s part: fill the settings of a pair that has none; with `reembed`, replace
    differing ones (returned, so the caller says what changed); without it, refuse them. The
    caller owns the transaction."""
    old = recorded(conn, names, lock=True)
    if old is ... or old == mine:
        return None
    if old is not None and not reembed:
        raise _refusal([(names, old, mine)])
    with mapped_errors(f"recording the vector settings of {names.source}/{names.model}"):
        conn.execute(
            "UPDATE embedkeeper.pairs SET vector_settings = %s WHERE source = %s AND model = %s",
            (Jsonb(mine), names.source, names.model),
        )
    replaced: Settings | None = old
    return replaced
