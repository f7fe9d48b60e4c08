"""Every advisory-lock key embedkeeper takes, defined here once.

A key is two int4: hashtext(space) and hashtext(item). Claims are session-level locks on
(claims of the model, document id), so they die with the session; the others serialize one
piece of housekeeping across instances. A document may be embedded for two models at once,
hence a claim space per model.
"""

from __future__ import annotations

PRUNE = "embedkeeper:prune"  # (PRUNE, model): one instance prunes a model at a time
INDEX = "embedkeeper:index"  # (INDEX, model): a deferring backfill holds it shared
MIGRATE = "embedkeeper:migrate"  # one migration at a time (alembic/env.py)
DEMO = "embedkeeper:demo"  # one demo corpus load at a time


def claim_space(model: str) -> str:
    """The space of a model's claims: (claim_space(model), document id)."""
    return f"embedkeeper:{model}"
