"""Embedding backends: the Backend protocol the pipeline calls, and make_backend() to build one.

A backend turns documents into vectors and nothing else: no SQL, no claims. It raises
BackendUnavailable for an outage (nobody is charged) and InputRejected when the batch holds input
it cannot embed (the pipeline then splits the batch to find the culprits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from daemon.config import ModelConfig
from daemon.documents import Document, Embedded
from daemon.errors import ConfigError


class Backend(Protocol):
    @property
    def dimensions(self) -> int:
        """The length of the vectors this backend returns."""
        ...

    @property
    def max_chars(self) -> int:
        """How much of a text to fetch: more than the model's window can ever use."""
        ...

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        """One vector per document, in order."""
        ...

    def close(self) -> None: ...


def make_backend(model: ModelConfig) -> Backend:
    if model.backend == "sentence-transformers":
        from daemon.backends.local import SentenceTransformerBackend

        return SentenceTransformerBackend(model)
    raise ConfigError(f'config: [[models]] "{model.name}" backend "{model.backend}" is unknown')
