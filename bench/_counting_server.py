"""A cheap model for tests/standin.py's server, for benches that count what a pass sends rather
than time a model: each input's vector is a unit vector seeded by a hash of its text, so the same
text always gets the same vector (a reused vector can be checked against its passage) and
different texts get nearly orthogonal ones. The server records every input it receives
(`StandIn.calls.inputs`); bench/edit_cost.py counts them."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

DIMENSIONS = 384


def hash_vector(text: str, dimensions: int = DIMENSIONS) -> Any:
    """A unit float32 vector of `text`, the same for the same text in every process."""
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    return vector / np.linalg.norm(vector)


class HashModel:
    """What tests.standin.StandIn calls of a SentenceTransformer: `encode`."""

    def encode(self, texts: list[str], **_: Any) -> Any:
        return np.stack([hash_vector(t) for t in texts]) if texts else np.zeros((0, DIMENSIONS))
