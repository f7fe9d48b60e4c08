"""embedkeeper's own tables, in the schema "embedkeeper"; never the user's table."""

from __future__ import annotations

from typing import Any

from .schema import SCHEMA

__all__ = [
    "DOCUMENT_ID_TYPES",
    "SCHEMA",
    "deferred_indexes",
    "embeddings",
    "failures",
    "inflight",
    "metadata",
    "registered_models",
    "runs",
    "switches",
    "sync_state",
]


def __getattr__(name: str) -> Any:
    """The tables on first use (PEP 562): importing embedkeeper.models.pairs or .schema, as every
    command does to name a pair's tables, does not import SQLAlchemy."""
    if name in __all__:
        from . import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
