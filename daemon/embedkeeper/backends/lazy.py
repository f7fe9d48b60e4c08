"""A backend that loads its model on first use.

Why: a scheduled pass (`run --once` from a systemd timer or cron, or a daemon tick) usually
finds nothing to embed, and loading a sentence-transformers model costs seconds of torch start-up
that such a pass would throw away. The pass needs only the vectors' dimensions before it claims
(and those are known from the config or the model registry once the model has embedded
anything), so the model is loaded by the first call that needs it: embed(), or a property only
the loaded backend can answer. The loader is the app's checked loader, so a model whose
dimensions do not match its stored vectors still fails before anything is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from threading import Event

from embedkeeper.backends import Backend, Recovering
from embedkeeper.records import Document, Embedded


class LazyBackend:
    """`load` builds (and checks) the real backend; `dimensions` is what the vectors are known to
    have without it (None: unknown, so asking loads the model)."""

    def __init__(self, load: Callable[[], Backend], dimensions: int | None) -> None:
        self._load = load
        self._known_dimensions = dimensions
        self._backend: Backend | None = None
        self._lock = threading.Lock()  # a server's parts may call embed() on several threads

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    def backend(self) -> Backend:
        """The real backend, loaded once."""
        with self._lock:
            if self._backend is None:
                self._backend = self._load()
            return self._backend

    @property
    def dimensions(self) -> int:
        if self._known_dimensions is not None and self._backend is None:
            return self._known_dimensions
        return self.backend().dimensions

    @property
    def max_chars(self) -> int:
        return self.backend().max_chars

    @property
    def request_size(self) -> int:
        return self.backend().request_size

    @property
    def concurrency(self) -> int:
        return self.backend().concurrency

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        return self.backend().embed(documents)

    def wait_for_recovery(self, delay_s: float, stop: Event) -> bool:
        """After an outage: the loaded backend's own wait (a server probes until it answers)."""
        if isinstance(self._backend, Recovering):
            return self._backend.wait_for_recovery(delay_s, stop)
        stop.wait(delay_s)
        return False

    def close(self) -> None:
        """Nothing to close until loaded; the app closes what it loaded."""
