"""Embedding backends: the Backend protocol the pipeline calls, and make_backend() to build one.

A backend turns documents into vectors and nothing else: no SQL, no claims. It raises
BackendUnavailable for an outage (nobody is charged) and InputRejected when the batch holds input
it cannot embed (the pipeline then splits the batch to find the culprits).
"""

from __future__ import annotations

from collections.abc import Sequence
from threading import Event
from typing import Protocol, runtime_checkable

from embedkeeper.config import ModelConfig, RetryConfig
from embedkeeper.errors import ConfigError
from embedkeeper.records import Document, Embedded


class Backend(Protocol):
    @property
    def dimensions(self) -> int:
        """The length of the vectors this backend returns."""
        ...

    @property
    def max_chars(self) -> int:
        """How much of a text to fetch: more than the model's window can ever use."""
        ...

    @property
    def request_size(self) -> int:
        """Documents per embed() call (the pipeline splits a claimed batch into these)."""
        ...

    @property
    def concurrency(self) -> int:
        """embed() calls the pipeline may have in flight at once."""
        ...

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        """One vector per document, in order."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Recovering(Protocol):
    """A backend that can tell when an outage is over (a server answering its probe again)."""

    def wait_for_recovery(self, delay_s: float, stop: Event) -> bool: ...


def wait_after_outage(backend: Backend, delay_s: float, stop: Event) -> bool:
    """Wait `delay_s` after an outage, or less if the backend is back sooner; True if `stop` was
    set. A server is probed every second meanwhile, so a pass resumes within about a second of
    its return rather than at the end of a backoff grown to a minute."""
    if isinstance(backend, Recovering):
        backend.wait_for_recovery(delay_s, stop)
        return stop.is_set()
    return stop.wait(delay_s)


def make_backend(model: ModelConfig, retry: RetryConfig | None = None) -> Backend:
    if model.backend == "sentence-transformers":
        from embedkeeper.backends.local import SentenceTransformerBackend

        return SentenceTransformerBackend(model)
    if model.backend == "null":
        from embedkeeper.backends.null import NullBackend

        return NullBackend(model)
    if model.is_http:
        from embedkeeper.backends.remote import RemoteBackend

        return RemoteBackend(model, retry)
    raise ConfigError(f'config: [[models]] "{model.name}" backend "{model.backend}" is unknown')


def carried_counts(documents: Sequence[Document]) -> list[int] | None:
    """The tokens the chunker counted for each document (a chunk), or None if it did not count
    them all: then the backend's tokenizer counts (chunking "none", no tokenizer)."""
    counts = [d.token_count for d in documents]
    if any(n is None for n in counts):
        return None
    return [n for n in counts if n is not None]
