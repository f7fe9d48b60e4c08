"""Pieces the wire formats share: a parsed reply, turning JSON lists into vectors, and the error
for a response that does not follow the protocol (an outage of the server, never a document's
fault)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class WireError(Exception):
    """The response does not follow the protocol."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One response: a vector per input, the server's token figure for the whole request (its
    own count, whatever it counts: infinity counts characters), and the model it says it used."""

    vectors: list[np.ndarray]
    tokens: int
    model: str | None


def server_figure(value: Any) -> int:
    """A token count as the server reported it; 0 if it sent none or nonsense."""
    return value if isinstance(value, int) and value >= 0 else 0


def model_named(data: Any) -> str | None:
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


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
