"""The backend for embedding servers: a wire format (Ollama or OpenAI) over the shared HTTP client.

At start one probe call learns the server's dimensions (retried while the server is starting).
A response that breaks the protocol (missing vectors, fewer than inputs, bad indexes) is an outage
of the server and charges no document; a vector of the wrong size, NaN or zero is left to the
pipeline, which makes it that document's failure.

A 4xx the server gives a batch is the batch's fault only if the server still takes the probe
text alone: if it refuses that too (infinity's 400 for a model it no longer serves), no document
can be blamed, and BackendRefused stops the pass with nobody charged. The probe text is also the
recovery probe: while we wait out an outage it goes out every second, so work resumes as soon as
the server answers again.

Token counts come from the model's tokenizer when [[models]] names one (and truncation is known
from its window); else they are the server's own figure, shared out by text length.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from threading import Event, Lock
from typing import Any, Protocol

import numpy as np

from embedkeeper.backends import carried_counts
from embedkeeper.backends._http import HttpClient, RetryPolicy
from embedkeeper.backends.breaker import CircuitBreaker
from embedkeeper.backends.token_count import TokenCounter
from embedkeeper.backends.wire import Reply, WireError
from embedkeeper.chunking.for_model import CHARS_PER_TOKEN_BOUND
from embedkeeper.config import ModelConfig, RetryConfig
from embedkeeper.errors import BackendRefused, BackendUnavailable, InputRejected
from embedkeeper.logs import event, log_field
from embedkeeper.records import Document, Embedded
from embedkeeper.retry import Backoff

log = logging.getLogger(__name__)

PROBE_TEXT = "embedkeeper dimension probe"
_NOT_YET = object()
BYTES_PER_NUMBER = 32  # a float as JSON text, with room to spare
SERVER_MAX_CHARS = 100_000  # of a text, sent to a server whose window we do not know


class Wire(Protocol):
    label: str
    url: str

    def payload(self, texts: list[str]) -> dict[str, Any]: ...

    def parse(self, data: Any, count: int) -> Reply: ...


def make_wire(config: ModelConfig) -> Wire:
    if config.backend == "ollama":
        from embedkeeper.backends.ollama import OllamaWire

        return OllamaWire(config)
    from embedkeeper.backends.openai import OpenAIWire

    return OpenAIWire(config)


def text_budget(config: ModelConfig, window: int | None) -> int:
    """How much of a text to send. With the window known (a tokenizer): what it can hold, with
    the local model's margin. Otherwise the server truncates (Ollama's truncate, or its own
    limit), but some refuse a long input outright (infinity: over 122,880 characters), so stay
    under that."""
    if window is not None:
        return len(config.prefix) + window * CHARS_PER_TOKEN_BOUND
    return SERVER_MAX_CHARS


class RemoteBackend:
    def __init__(self, config: ModelConfig, retry: RetryConfig | None = None) -> None:
        retry = retry or RetryConfig()
        self.config = config
        self.where = f'[[models]] "{config.name}"'
        self.wire = make_wire(config)
        self.label = f"{self.wire.label} at {self.wire.url}"
        self.counter = (
            TokenCounter(config.tokenizer, config.max_tokens, self.where)
            if config.tokenizer
            else None
        )
        self.http = HttpClient(
            self.wire.url,
            timeout_s=config.timeout_s,
            api_key=config.api_key,
            retry=RetryPolicy(retry.transient_attempts, retry.transient_backoff_max_s),
            label=self.label,
            where=self.where,
            model=config.model,
            breaker=CircuitBreaker(
                cooldown_s=min(5.0, retry.transient_backoff_max_s),
                max_cooldown_s=max(retry.transient_backoff_max_s, 5.0),
            ),
        )
        self.http.recovery_probe = self.probe_once
        self._warned_run: object = _NOT_YET  # the pass (run id) last warned about the model
        self._warn_lock = Lock()
        try:
            self._dimensions = self._probe(retry)
        except BaseException:
            self.http.close()
            raise
        # Where the stored token counts come from: our count, or the server's own figure.
        counts: dict[str, object] = {"token_counts": "server"}
        if self.counter is not None:
            counts = {"token_counts": "tokenizer", "window": self.counter.window}
        event(
            log,
            logging.INFO,
            "model_loaded",
            model=config.name,
            backend=config.backend,
            url=self.wire.url,
            dimensions=self._dimensions,
            **counts,
        )

    def _probe(self, retry: RetryConfig) -> int:
        """Embed one short text to learn the dimensions; wait while the server starts, probing
        every second so that a server that comes up is used at once."""
        backoff = Backoff(retry.transient_attempts, retry.transient_backoff_max_s)
        while True:
            try:
                [vector] = self._call([PROBE_TEXT]).vectors
                return int(vector.shape[0])
            except InputRejected as exc:
                raise BackendRefused(
                    f"{self.where}: {self.label} refused even a short probe text ({exc}); check"
                    f' model "{self.config.model}" and url'
                ) from exc
            except BackendUnavailable as exc:
                # The HTTP client retried the probe already (retried): one budget, not two.
                delay = None if exc.retried else backoff.next_delay_s(exc.retry_after_s)
                if delay is None:
                    raise BackendUnavailable(
                        f"{self.where}: cannot reach {self.label} ({self.http.last_error}); check"
                        " url and that the server is running",
                        retried=True,
                    ) from exc
                self.http.pause(delay)

    def probe_once(self) -> bool:
        """One request with the probe text, no retry: does the server embed again?"""
        return self.http.try_once(
            self.wire.url, self.wire.payload([PROBE_TEXT]), self._max_bytes(1)
        )

    def wait_for_recovery(self, delay_s: float, stop: Event) -> bool:
        """Wait up to `delay_s` after an outage; True as soon as the server embeds again."""
        return self.http.pause(delay_s, stop)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_chars(self) -> int:
        return text_budget(self.config, self.counter.window if self.counter else None)

    @property
    def request_size(self) -> int:
        return self.config.batch_size

    @property
    def concurrency(self) -> int:
        return self.config.concurrency

    def _max_bytes(self, count: int) -> int:
        dims = self.config.dimensions or 8192  # before the probe: a bound for any model
        return 1_000_000 + count * dims * BYTES_PER_NUMBER

    def _call(self, texts: list[str]) -> Reply:
        data = self.http.post_json(
            self.wire.url, self.wire.payload(texts), self._max_bytes(len(texts))
        )
        try:
            reply = self.wire.parse(data, len(texts))
        except WireError as exc:
            self.http.breaker.record_failure()
            raise BackendUnavailable(
                f"{self.where}: {self.label} sent a malformed response: {exc}"
            ) from exc
        if reply.model is not None and reply.model != self.config.model:
            self._warn_other_model(reply.model)
        return reply

    def _warn_other_model(self, answered: str) -> None:
        """Once per pass (per run id), or once at start: a server with one model loaded may
        answer any name with that model's vectors. A model's passes never overlap, so the last
        run warned about is all there is to remember."""
        run = log_field("run")
        with self._warn_lock:
            if run == self._warned_run:
                return
            self._warned_run = run
        event(
            log,
            logging.WARNING,
            "backend_other_model",
            model=self.config.name,
            asked=self.config.model,
            answered=answered,
            url=self.wire.url,
        )

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        texts = [self.config.prefix + d.text for d in documents]
        try:
            reply = self._call(texts)
        except InputRejected as exc:
            self._blame_check(exc)
            raise
        vectors = reply.vectors
        if self.config.normalize:
            vectors = [_unit(v) for v in vectors]
        if self.counter is not None:
            window = self.counter.window
            counts = carried_counts(documents) or self.counter.count(texts)
            return [
                Embedded(d, v, token_count=min(n, window), truncated=n > window or d.cut)
                for d, v, n in zip(documents, vectors, counts, strict=True)
            ]
        shares = _apportion(reply.tokens, [len(t) for t in texts])
        return [
            Embedded(document=d, vector=v, token_count=n, truncated=d.cut)
            for d, v, n in zip(documents, vectors, shares, strict=True)
        ]

    def _blame_check(self, rejected: InputRejected) -> None:
        """The server rejected a request: blame its input only if the probe text alone still
        gets through. If the probe is refused too, nothing we send would be taken."""
        try:
            self._call([PROBE_TEXT])
        except InputRejected as exc:
            raise BackendRefused(
                f"{self.where}: {self.label} refuses every input, a short probe text too"
                f' ({exc}); check model "{self.config.model}" and the server'
            ) from rejected

    def close(self) -> None:
        self.http.close()


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector)) if np.all(np.isfinite(vector)) else 0.0
    return vector / norm if norm > 0 else vector  # a zero or NaN vector is caught downstream


def _apportion(total: int, lengths: list[int]) -> list[int]:
    """The server reports tokens per request; share them out by text length."""
    chars = sum(lengths) or 1
    return [round(total * n / chars) for n in lengths]
