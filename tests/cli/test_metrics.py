"""`/metrics` from the first seconds after start (the coverage gauges do not wait one
coverage_interval), the tokens, chunks and reuse counters against the runs they count, the backlog
gauge, and the bounded history of `embedkeeper.runs` that the daemon keeps."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import cast

import httpx
import pytest

from embedkeeper.app import App
from embedkeeper.records import RunStats
from embedkeeper.service.metrics import Metrics
from embedkeeper.service.progress import Progress
from embedkeeper.service.worker import Worker
from tests.cli.helpers import scalar, wait_for
from tests.conftest import insert_docs
from tests.standin import StandIn


@pytest.fixture
def server(minilm) -> Iterator[StandIn]:
    standin = StandIn(minilm.model)
    yield standin
    standin.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(text: str, name: str, model: str = "nomic") -> float | None:
    match = re.search(rf'^{re.escape(name)}\{{model="{model}",source="docs"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def ollama(url: str) -> list[dict[str, str]]:
    return [{"name": "nomic", "backend": "ollama", "model": "m", "url": url}]


def test_coverage_gauges_are_served_within_seconds_of_start(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(10)])
    conn.execute("ANALYZE public.docs")
    cli.configure(
        models=ollama(server.url),
        schedule={"interval": "1h"},  # one pass, at once
        metrics={"coverage_interval": "1h", "backlog_interval": "1s"},
    )
    port = free_port()
    child = cli.start("run", "--metrics-port", str(port))

    wait_for(lambda: scrape(port), 60, "the metrics server", alive=child)
    served_at = time.monotonic()

    def with_coverage() -> str | None:
        text = scrape(port)
        return text if metric(text, "embedkeeper_total") is not None else None

    text = wait_for(with_coverage, 10, "coverage gauges, though coverage_interval is 1h")
    assert time.monotonic() - served_at < 10
    assert metric(text, "embedkeeper_total") == 10
    for name in ("embedkeeper_embedded", "embedkeeper_pending", "embedkeeper_failed"):
        assert metric(text, name) is not None, name

    def settled() -> str | None:
        text = scrape(port)
        embedded = metric(text, "embedkeeper_documents_embedded_total")
        return text if metric(text, "embedkeeper_backlog") == 0 and embedded == 10 else None

    text = wait_for(settled, 60, "the pass, and the backlog gauge at 0", alive=child)
    tokens = scalar(conn, "SELECT sum(tokens) FROM embedkeeper.runs WHERE model = 'nomic'")
    assert tokens > 0
    assert metric(text, "embedkeeper_tokens_total") == tokens
    chunks = scalar(conn, "SELECT sum(chunks_embedded) FROM embedkeeper.runs WHERE model = 'nomic'")
    assert chunks == 10  # ten short texts, one chunk each, all sent
    assert metric(text, "embedkeeper_chunks_embedded_total") == chunks
    # Nothing to reuse on a first pass: the counters are served, at the runs' 0.
    reused = conn.execute(
        "SELECT sum(chunks_reused), sum(tokens_reused) FROM embedkeeper.runs WHERE model = 'nomic'"
    ).fetchone()
    assert reused == (0, 0)
    assert metric(text, "embedkeeper_reused_chunks_total") == 0
    assert metric(text, "embedkeeper_reused_tokens_total") == 0

    child.process.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0


def test_the_daemon_prunes_runs_older_than_keep(cli, conn, server):
    insert_docs(conn, ["one text"])
    for days in (45, 31, 29, 1):
        conn.execute(
            "INSERT INTO embedkeeper.runs (model, trigger, status, started_at, finished_at)"
            " VALUES ('nomic', 'schedule', 'ok', now() - make_interval(days => %s),"
            " now() - make_interval(days => %s))",
            (days, days),
        )
    cli.configure(models=ollama(server.url), runs={"keep": "30d"})

    result = cli("run", "--once")

    assert result.returncode == 0, result.stderr
    assert "runs_pruned runs=2 keep_s=2592000" in result.stderr
    ages = conn.execute(
        "SELECT round(extract(epoch FROM now() - finished_at) / 86400)::int"
        " FROM embedkeeper.runs ORDER BY finished_at"
    ).fetchall()
    assert [a[0] for a in ages][:2] == [29, 1]
    assert {a[0] for a in ages[2:]} == {0}  # the tick's own passes (schedule, sweep) are kept


def test_each_batch_adds_what_it_sent_and_what_it_reused():
    """The daemon's worker turns a pass's running totals into each batch's counts."""
    metrics = Metrics([("docs", "nomic")])
    worker = Worker(cast(App, None), threading.Event(), metrics)  # _beat needs no app
    worker.pair = ("docs", "nomic")
    progress = Progress("nomic", None, bar=False)
    try:
        worker._beat(
            RunStats(ok=2, chunks=5, tokens=200, reused_chunks=3, reused_tokens=120),
            progress=progress,
        )
        first = metrics.render().decode()
        worker._beat(  # the totals after a second batch, which reused nothing
            RunStats(ok=3, chunks=7, tokens=260, reused_chunks=3, reused_tokens=120),
            progress=progress,
        )
        second = metrics.render().decode()
    finally:
        progress.close()

    expected = {
        "embedkeeper_documents_embedded_total": (2, 3),
        "embedkeeper_tokens_total": (200, 260),
        "embedkeeper_chunks_embedded_total": (5, 7),
        "embedkeeper_reused_chunks_total": (3, 3),
        "embedkeeper_reused_tokens_total": (120, 120),
    }
    for name, values in expected.items():
        assert (metric(first, name), metric(second, name)) == values, name
