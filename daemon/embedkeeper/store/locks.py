"""Every advisory-lock key embedkeeper takes, defined here once.

A key is two int4: hashtext(space) and hashtext(item). Claims are session-level locks on
(claims of the model, document id), so they die with the session; the others serialize one
piece of housekeeping across instances. A document may be embedded for two models at once,
hence a claim space per model.
"""

from __future__ import annotations

PRUNE = "embedkeeper:prune"  # (PRUNE, pair_key): one instance prunes a model at a time
INDEX = "embedkeeper:index"  # (INDEX, model): a deferring backfill holds it shared
MIGRATE = "embedkeeper:migrate"  # one migration at a time (alembic/env.py)
DEMO = "embedkeeper:demo"  # one demo corpus load at a time
PAIRS = "embedkeeper:pairs"  # (PAIRS, base name): one instance makes a pair's tables at a time


def claim_space(source: str, model: str) -> str:
    """The space of a (source, model) pair's claims: (claim_space(source, model), document id).
    The source is in it because two sources' keys may be equal."""
    return f"embedkeeper:{source}:{model}"


def pair_key(source: str, model: str) -> str:
    """The second half of a housekeeping lock held per (source, model) pair."""
    return f"{source}:{model}"
