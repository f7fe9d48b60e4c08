"""Pieces the wire formats share: turning JSON lists into vectors, and the error for a response
that does not follow the protocol (an outage of the server, never a document's fault)."""

from __future__ import annotations

from typing import Any

import numpy as np


class WireError(Exception):
    """The response does not follow the protocol."""


def vectors_from_lists(items: list[Any], count: int) -> list[np.ndarray]:
    """One float32 vector per input; a non-numeric entry is a protocol error. Wrong lengths, NaN
    and zero vectors are left to the pipeline's per-document check."""
    if len(items) != count:
        raise WireError(f"{len(items)} embeddings for {count} inputs")
    vectors = []
    for item in items:
        try:
            vector = np.asarray(item, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise WireError("an embedding is not a list of numbers") from exc
        if vector.ndim != 1:
            raise WireError("an embedding is not a flat list of numbers")
        vectors.append(vector)
    return vectors
