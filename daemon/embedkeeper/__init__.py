"""embedkeeper: keeps pgvector embeddings in step with the documents in PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"
