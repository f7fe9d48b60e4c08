"""Prometheus metrics and a health endpoint for `embedkeeper run --metrics-port N`.

Counters and the batch-latency histogram are fed from the passes as they happen; the coverage
gauges (pending, stale, failed per pair) come from the coverage query on their own, slower
cadence, since on a big table that query reads every row; the first refresh runs at start, so an
alert never sees "no data" after a restart. The backlog gauge is the cheap estimate of what is
pending (store/report/backlog.py: no row of the source read), refreshed often. /healthz answers 200
while the daemon can work (its last pass did not fail for lack of the database or the backend),
503 otherwise. The server starts with the daemon, before the database and the backend are
reached, and says "starting" (503) until they are: a probe then tells a daemon that waits from
one that is gone. Every series is labelled by `source` and `model`: one per (source, model) pair.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from embedkeeper.store.report.backlog import Backlog
from embedkeeper.store.report.coverage import Coverage


class Metrics:
    def __init__(self, pairs: Sequence[tuple[str, str]] = ()) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.embedded = Counter(
            "embedkeeper_documents_embedded",
            "Documents embedded and written",
            ["source", "model"],
            registry=r,
        )
        self.failed = Counter(
            "embedkeeper_documents_failed",
            "Documents charged a failed attempt",
            ["source", "model"],
            registry=r,
        )
        self.backend_errors = Counter(
            "embedkeeper_backend_errors",
            "Passes cut short, by error class",
            ["source", "model", "error"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "embedkeeper_batch_seconds",
            "Time to claim, embed and write one batch",
            ["source", "model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.coverage = {
            name: Gauge(
                f"embedkeeper_{name}",
                f"Documents {name}, from the coverage query",
                ["source", "model"],
                registry=r,
            )
            for name in ("pending", "stale", "failed", "ignored", "skipped", "embedded", "total")
        }
        self.last_success = Gauge(
            "embedkeeper_last_success_timestamp_seconds",
            "End of the last pass that worked",
            ["source", "model"],
            registry=r,
        )
        self.tokens = Counter(
            "embedkeeper_tokens",
            "Tokens embedded: the model's count, or the server's reported usage",
            ["source", "model"],
            registry=r,
        )
        # What a pass sent beside what it kept: chunks whose passage the document already had
        # keep their stored vector and are never sent (their tokens are not in embedkeeper_tokens).
        self.chunks = Counter(
            "embedkeeper_chunks_embedded",
            "Chunks sent to the model and written",
            ["source", "model"],
            registry=r,
        )
        self.reused_chunks = Counter(
            "embedkeeper_reused_chunks",
            "Chunks whose stored vector was kept: not sent to the model",
            ["source", "model"],
            registry=r,
        )
        self.reused_tokens = Counter(
            "embedkeeper_reused_tokens",
            "Tokens of the reused chunks: not sent to the model",
            ["source", "model"],
            registry=r,
        )
        self.backlog = Gauge(
            "embedkeeper_backlog",
            "Documents still to embed, estimated without reading the source",
            ["source", "model"],
            registry=r,
        )
        self.healthy = True
        self.ready = False  # /healthz says "starting" until the daemon has its database and models
        # Every series from the start, one per (source, model) pair: rate() needs the first
        # sample at 0.
        for source, model in pairs:
            for counter in (
                self.embedded,
                self.failed,
                self.tokens,
                self.chunks,
                self.reused_chunks,
                self.reused_tokens,
            ):
                counter.labels(source, model)

    def record_batch(
        self,
        pair: tuple[str, str],
        seconds: float,
        ok: int,
        failed: int,
        tokens: int = 0,
        *,
        chunks: int = 0,
        reused_chunks: int = 0,
        reused_tokens: int = 0,
    ) -> None:
        """One batch's counts: `tokens` and `chunks` sent to the model, `reused_*` kept."""
        self.batch_seconds.labels(*pair).observe(seconds)
        self.embedded.labels(*pair).inc(ok)
        self.failed.labels(*pair).inc(failed)
        self.tokens.labels(*pair).inc(tokens)
        self.chunks.labels(*pair).inc(chunks)
        self.reused_chunks.labels(*pair).inc(reused_chunks)
        self.reused_tokens.labels(*pair).inc(reused_tokens)

    def record_pass(self, pair: tuple[str, str], error: str | None) -> None:
        if error is None:
            self.last_success.labels(*pair).set(time.time())
            self.healthy = True
        else:
            self.backend_errors.labels(*pair, error).inc()
            self.healthy = error not in (
                "DatabaseUnavailable",
                "BackendUnavailable",
                "BackendRefused",
            )

    def record_coverage(self, figures: Coverage) -> None:
        for name, gauge in self.coverage.items():
            gauge.labels(figures.source, figures.model).set(getattr(figures, name))

    def record_backlog(self, source: str, figures: Backlog) -> None:
        self.backlog.labels(source, figures.model).set(figures.pending)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(metrics: Metrics, host: str, port: int) -> Callable[[], None]:
    """Serve /metrics and /healthz in a thread; returns the function that stops it."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz" and not metrics.ready:
                self._send(503, b"starting\n", "text/plain")
            elif self.path == "/healthz":
                ok = metrics.healthy
                self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
