"""The null backend: a fixed unit vector for every document, at once. For benchmarks and tests
only (it measures everything but the model); never for real data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedkeeper.config import ModelConfig
from embedkeeper.records import Document, Embedded


class NullBackend:
    def __init__(self, config: ModelConfig) -> None:
        self._dimensions = config.dimensions or 384
        vector = np.zeros(self._dimensions, dtype=np.float32)
        vector[0] = 1.0
        self.vector = vector

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_chars(self) -> int:
        return 1024

    @property
    def request_size(self) -> int:
        return 1 << 30

    @property
    def concurrency(self) -> int:
        return 1

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        return [Embedded(d, self.vector, token_count=0, truncated=d.cut) for d in documents]

    def close(self) -> None:
        pass
