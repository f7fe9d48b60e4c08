"""embedkeeper's own tables, in the schema "embedkeeper"; never the user's table."""

from __future__ import annotations

from .tables import (
    DOCUMENT_ID_TYPES,
    SCHEMA,
    deferred_indexes,
    embeddings,
    failures,
    inflight,
    metadata,
    registered_models,
    runs,
    sync_state,
)

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
    "sync_state",
]
