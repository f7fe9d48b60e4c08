"""Scripted backends for tests that pin the loop's control flow (the database is always real)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from embedkeeper.errors import BackendUnavailable, InputRejected
from embedkeeper.records import Document, DocumentId, Embedded


def unit_vector(text: str, dimensions: int = 384) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    return vector / np.linalg.norm(vector)


class ScriptedBackend:
    """Embeds with a hash-seeded unit vector. Rejects texts containing `poison`; raises
    BackendUnavailable for the first `outages` calls; `vector_for` can return a bad vector;
    `during` runs inside embed (to change the database mid-batch)."""

    def __init__(
        self,
        *,
        dimensions: int = 384,
        poison: str | None = None,
        outages: int = 0,
        delay_s: float = 0.0,
        vector_for: Callable[[str], np.ndarray | None] | None = None,
        during: Callable[[Sequence[Document]], None] | None = None,
    ) -> None:
        self._dimensions = dimensions
        self.poison = poison
        self.outages = outages
        self.delay_s = delay_s
        self.vector_for = vector_for
        self.during = during
        self.calls: list[list[DocumentId]] = []
        self.embedded: list[DocumentId] = []
        self.lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_chars(self) -> int:
        return 4096

    request_size = 1 << 30
    concurrency = 1

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        with self.lock:
            self.calls.append([d.id for d in documents])
            if self.outages > 0:
                self.outages -= 1
                raise BackendUnavailable("stand-in outage")
        if self.poison and any(self.poison in d.text for d in documents):
            raise InputRejected("input contains the poison marker")
        if self.during is not None:
            self.during(documents)
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for d in documents:
            special = self.vector_for(d.text) if self.vector_for else None
            vector = special if special is not None else unit_vector(d.text, self._dimensions)
            out.append(Embedded(d, vector, token_count=len(d.text.split()), truncated=False))
        with self.lock:
            self.embedded += [d.id for d in documents]
        return out

    def close(self) -> None:
        pass
