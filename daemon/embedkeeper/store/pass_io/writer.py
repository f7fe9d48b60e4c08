"""Failures charged: one attempt more for each rejected document, in the failures table of the
(source, model) pair. A changed text starts its count again (store/source/queries.py,
record_failures). Vectors are written by store/pass_io/chunk_writer.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from embedkeeper.config import RetryConfig
from embedkeeper.logs import mask_secrets
from embedkeeper.records import Rejected
from embedkeeper.store.pair.pair import Pair


def charge(
    conn: psycopg.Connection[Any],
    pair: Pair,
    rejected: Sequence[Rejected],
    retry: RetryConfig,
    *,
    may_review: bool = True,
) -> None:
    """One attempt more for each document (claims are the caller's).
    With may_review=False the attempt counts but cannot put the document in review."""
    if not rejected:
        return
    with conn.transaction():
        conn.execute(
            pair.statements.record_failures(),
            {
                "model": pair.model_name,
                "ids": [r.document.id for r in rejected],
                "classes": [r.error_class for r in rejected],
                "messages": [mask_secrets(r.message) for r in rejected],
                "hashes": [r.document.content_hash for r in rejected],
                "max_attempts": retry.max_attempts if may_review else 1 << 30,
                "backoff_s": retry.backoff_s,
                "backoff_max_s": retry.backoff_max_s,
            },
        )
