"""The backend for embedding servers: a wire format (Ollama or OpenAI) over the shared HTTP client.

At start one probe call learns the server's dimensions (retried while the server is starting).
A response that breaks the protocol (missing vectors, fewer than inputs, bad indexes) is an outage
of the server and charges no document; a vector of the wrong size, NaN or zero is left to the
pipeline, which makes it that document's failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from embedkeeper.backends._http import HttpClient, RetryPolicy
from embedkeeper.backends.breaker import CircuitBreaker
from embedkeeper.backends.wire import WireError
from embedkeeper.config import ModelConfig, RetryConfig
from embedkeeper.errors import BackendUnavailable
from embedkeeper.logs import event
from embedkeeper.records import Document, Embedded
from embedkeeper.retry import Backoff

log = logging.getLogger(__name__)

PROBE_TEXT = "embedkeeper dimension probe"
BYTES_PER_NUMBER = 32  # a float as JSON text, with room to spare


class Wire(Protocol):
    label: str
    url: str

    def payload(self, texts: list[str]) -> dict[str, Any]: ...

    def parse(self, data: Any, count: int) -> tuple[list[np.ndarray], int]: ...


def make_wire(config: ModelConfig) -> Wire:
    if config.backend == "ollama":
        from embedkeeper.backends.ollama import OllamaWire

        return OllamaWire(config)
    from embedkeeper.backends.openai import OpenAIWire

    return OpenAIWire(config)


class RemoteBackend:
    def __init__(self, config: ModelConfig, retry: RetryConfig | None = None) -> None:
        retry = retry or RetryConfig()
        self.config = config
        self.wire = make_wire(config)
        self.label = f"{self.wire.label} at {self.wire.url}"
        self.http = HttpClient(
            self.wire.url,
            timeout_s=config.timeout_s,
            api_key=config.api_key,
            retry=RetryPolicy(retry.transient_attempts, retry.transient_backoff_max_s),
            label=self.label,
            breaker=CircuitBreaker(
                cooldown_s=min(5.0, retry.transient_backoff_max_s),
                max_cooldown_s=max(retry.transient_backoff_max_s, 5.0),
            ),
        )
        try:
            self._dimensions = self._probe(retry)
        except BaseException:
            self.http.close()
            raise
        event(
            log,
            logging.INFO,
            "model_loaded",
            model=config.name,
            backend=config.backend,
            url=self.wire.url,
            dimensions=self._dimensions,
        )

    def _probe(self, retry: RetryConfig) -> int:
        """Embed one short text to learn the dimensions; wait while the server starts."""
        backoff = Backoff(retry.transient_attempts, retry.transient_backoff_max_s)
        while True:
            try:
                [vector], _ = self._call([PROBE_TEXT])
                return int(vector.shape[0])
            except BackendUnavailable as exc:
                delay = backoff.next_delay_s(exc.retry_after_s)
                if delay is None:
                    raise BackendUnavailable(
                        f'cannot reach {self.label} for [[models]] "{self.config.name}": {exc}'
                    ) from exc
                time.sleep(delay)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_chars(self) -> int:
        # The server truncates (Ollama's truncate, or the server's own limit); a generous prefix.
        return 200_000

    @property
    def request_size(self) -> int:
        return self.config.batch_size

    @property
    def concurrency(self) -> int:
        return self.config.concurrency

    def _call(self, texts: list[str]) -> tuple[list[np.ndarray], int]:
        dims = self.config.dimensions or 8192  # before the probe: a bound for any model
        max_bytes = 1_000_000 + len(texts) * dims * BYTES_PER_NUMBER
        data = self.http.post_json(self.wire.url, self.wire.payload(texts), max_bytes)
        try:
            return self.wire.parse(data, len(texts))
        except WireError as exc:
            self.http.breaker.record_failure()
            raise BackendUnavailable(f"{self.label} sent a malformed response: {exc}") from exc

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        texts = [self.config.prefix + d.text for d in documents]
        vectors, tokens = self._call(texts)
        if self.config.normalize:
            vectors = [_unit(v) for v in vectors]
        counts = _apportion(tokens, [len(t) for t in texts])
        return [
            Embedded(document=d, vector=v, token_count=n, truncated=d.cut)
            for d, v, n in zip(documents, vectors, counts, strict=True)
        ]

    def close(self) -> None:
        self.http.close()


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector)) if np.all(np.isfinite(vector)) else 0.0
    return vector / norm if norm > 0 else vector  # a zero or NaN vector is caught downstream


def _apportion(total: int, lengths: list[int]) -> list[int]:
    """The server reports tokens per request; share them out by text length."""
    chars = sum(lengths) or 1
    return [round(total * n / chars) for n in lengths]
