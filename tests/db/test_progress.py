"""Progress moves within a claimed batch (per slice the model finishes), with an ETA, and the
daemon says when each pass starts and how it ended. On the real database, with a scripted
backend that embeds in slices of 64 so one claimed batch of 1,024 takes many model calls."""

from __future__ import annotations

import logging
import re
import threading
import time

from embedkeeper.commands.backfill import backfill
from embedkeeper.service.progress import Progress, eta_s
from embedkeeper.service.worker import Worker
from tests.conftest import insert_docs, source_config
from tests.fakes import ScriptedBackend

ONE_BATCH = [{"name": "minilm", "dimensions": 384, "batch_size": 16, "claim_size": 1024}]


def progress_lines(caplog) -> list[dict[str, str]]:
    return [
        dict(re.findall(r"(\w+)=(\S+)", r.getMessage()))
        for r in caplog.records
        if r.getMessage().startswith("progress ")
    ]


def slices_of(size: int, delay_s: float = 0.0) -> ScriptedBackend:
    backend = ScriptedBackend(delay_s=delay_s)
    backend.request_size = size
    return backend


def test_a_backfill_logs_progress_while_its_one_batch_of_1024_is_embedded(
    conn, db_url, make_app, caplog
):
    insert_docs(conn, [f"document {i} about heap pages" for i in range(1024)])
    backend = slices_of(64)
    app = make_app(source_config(db_url, models=ONE_BATCH), backend)
    written_when_logged: list[int] = []
    caplog.set_level(logging.INFO)

    def count_vectors(record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("progress "):
            row = conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_documents").fetchone()
            written_when_logged.append(row[0] if row else -1)
        return True

    logging.getLogger("embedkeeper.service.progress").addFilter(count_vectors)
    try:
        result = backfill(app, app.config.models)
    finally:
        logging.getLogger("embedkeeper.service.progress").removeFilter(count_vectors)

    assert result.results["minilm"].stats.ok == 1024
    assert result.results["minilm"].stats.batches == 1  # one claimed batch ...
    assert len(backend.calls) == 16  # ... in 16 slices of 64
    lines = progress_lines(caplog)
    dones = [int(line["done"]) for line in lines]
    # A line at every tenth of the way, while the batch was still with the model: no vector
    # of it was written yet when each line but the last was logged.
    first_slice_past = [
        next(k for k in range(64, 1025, 64) if 10 * k // 1024 >= t) for t in range(10)
    ]
    assert dones == [*first_slice_past[1:], 1024]  # [128, 256, 320, ..., 960, 1024]
    assert written_when_logged[:9] == [0] * 9
    assert all(line["total"] == "1024" for line in lines)
    assert all(line["eta_s"].isdigit() for line in lines)


def test_progress_logs_at_least_every_interval_even_when_nothing_moves(caplog):
    caplog.set_level(logging.INFO)
    progress = Progress("minilm", 1000, interval_s=0.05, bar=False)
    time.sleep(0.3)
    progress.on_slice(10)  # under a tenth: no line of its own
    time.sleep(0.2)
    progress.close()

    lines = progress_lines(caplog)
    assert len(lines) >= 4
    assert lines[0]["done"] == "0"
    assert lines[0]["eta_s"] == "unknown"  # no rate yet
    assert lines[-1]["done"] == "10"
    assert lines[-1]["eta_s"].isdigit()


def test_eta_is_what_is_left_at_the_rate_so_far():
    assert eta_s(250, 1000, 10.0) == 30
    assert eta_s(1000, 1000, 10.0) == 0
    assert eta_s(0, 1000, 10.0) is None
    assert eta_s(5, None, 10.0) is None


def pass_events(caplog) -> list[str]:
    names = ("pass_start", "pass_done", "pass_interrupted", "pass_failed")
    return [r.getMessage().split()[0] for r in caplog.records if r.getMessage().startswith(names)]


def test_the_daemon_logs_each_pass_start_and_done(conn, db_url, make_app, caplog):
    insert_docs(conn, ["one", "two", "three"])
    app = make_app(source_config(db_url), ScriptedBackend())
    app.backend(app.config.models[0])  # the daemon loads every model before its first tick
    caplog.set_level(logging.INFO)

    Worker(app, threading.Event()).tick()

    # The schedule's pass, then the first sweep (none has run yet).
    assert pass_events(caplog) == ["pass_start", "pass_done", "pass_start", "pass_done"]
    assert "pass_start model=minilm trigger=schedule" in caplog.text
    assert "pass_done model=minilm trigger=schedule ok=3" in caplog.text


def test_a_pass_stopped_by_sigterm_is_logged_interrupted_not_done(conn, db_url, make_app, caplog):
    insert_docs(conn, [f"document {i}" for i in range(100)])
    stop = threading.Event()
    backend = ScriptedBackend(during=lambda docs: stop.set())  # SIGTERM mid-batch
    app = make_app(source_config(db_url), backend)
    app.backend(app.config.models[0])
    caplog.set_level(logging.INFO)

    Worker(app, stop).tick()

    assert pass_events(caplog) == ["pass_start", "pass_interrupted"]
    assert "pass_interrupted model=minilm trigger=schedule ok=32" in caplog.text
    runs = conn.execute("SELECT status, docs_ok FROM embedkeeper.runs").fetchall()
    assert runs == [("interrupted", 32)]


def test_a_pass_that_fails_is_logged_failed(conn, db_url, make_app, caplog):
    insert_docs(conn, ["one", "two"])
    app = make_app(source_config(db_url), ScriptedBackend(outages=100))  # the server stays down
    app.backend(app.config.models[0])
    caplog.set_level(logging.INFO)

    worker = Worker(app, threading.Event())
    worker.tick()

    assert pass_events(caplog) == ["pass_start", "pass_failed"]  # no sweep after a failure
    assert "pass_failed model=minilm trigger=schedule error=BackendUnavailable" in caplog.text
    assert worker.passes_failed == 1
    runs = conn.execute("SELECT status FROM embedkeeper.runs").fetchall()
    assert runs == [("failed",)]


def test_the_timer_logs_only_when_the_interval_passed_without_a_line(caplog):
    caplog.set_level(logging.INFO)
    progress = Progress("minilm", 100, interval_s=2.0, bar=False)
    for _ in range(6):  # a tenth every 0.1 s: the lines come from the slices alone
        time.sleep(0.1)
        progress.on_slice(10)
    time.sleep(3.0)  # then nothing moves: the timer speaks, 2 s after the last line
    progress.close()

    dones = [int(line["done"]) for line in progress_lines(caplog)]
    assert dones[:6] == [10, 20, 30, 40, 50, 60]
    assert dones[6:] == [60]
