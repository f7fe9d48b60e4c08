"""The bounded history of `embedkeeper.runs`: runs older than `[runs] keep` are pruned, in
batches, by the finish-time index (migration 0006), never by a scan of the whole table. And what
each run records of its pass: what it sent to the model beside what it reused (migration 0010)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import cast

from embedkeeper.records import RunStats
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.state.runs import PRUNE, finish_run, prune_runs, start_run
from tests.conftest import insert_docs, one_pass, source_config
from tests.fakes import ScriptedBackend
from tests.pairs import CHUNKS


def add_runs(conn, count: int, days_ago: float) -> None:
    conn.execute(
        "INSERT INTO embedkeeper.runs (model, trigger, status, started_at, finished_at)"
        " SELECT 'minilm', 'schedule', 'ok', t, t"
        " FROM (SELECT now() - make_interval(days => %s) - g * interval '1 second' AS t"
        "       FROM generate_series(1, %s) AS g) AS s",
        (days_ago, count),
    )


def test_old_runs_go_in_batches_and_the_rest_stay(conn):
    add_runs(conn, 250, days_ago=40)
    add_runs(conn, 30, days_ago=2)
    conn.execute(  # still running since long ago: no finish time, never pruned
        "INSERT INTO embedkeeper.runs (model, trigger, started_at)"
        " VALUES ('minilm', 'schedule', now() - interval '60 days')"
    )

    assert prune_runs(conn, 30 * 86400, batch=100) == 250

    left = conn.execute(
        "SELECT count(*) FILTER (WHERE finished_at IS NULL),"
        " count(*) FILTER (WHERE finished_at > now() - interval '3 days'), count(*)"
        " FROM embedkeeper.runs"
    ).fetchone()
    assert left == (1, 30, 31)
    assert prune_runs(conn, 30 * 86400) == 0


def test_the_prune_reads_a_range_of_the_finish_time_index(conn):
    add_runs(conn, 100, days_ago=40)
    add_runs(conn, 50_000, days_ago=1)  # a month of history at one pass a minute
    conn.execute("ANALYZE embedkeeper.runs")

    row = conn.execute("EXPLAIN (FORMAT JSON) " + PRUNE, (30 * 86400, 10_000)).fetchone()
    assert row is not None
    plan = json.dumps(row[0])
    assert '"Index Name": "runs_finished_idx"' in plan
    assert "Seq Scan" not in plan


def test_a_finished_run_records_what_it_embedded_and_what_it_reused(conn):
    pair = cast(Pair, SimpleNamespace(source_name="docs", model_name="minilm"))
    run_id = start_run(conn, pair, "schedule")
    stats = RunStats(ok=2, chunks=5, tokens=200, reused_chunks=3, reused_tokens=120)

    finish_run(conn, run_id, stats, status="ok")

    row = conn.execute(
        "SELECT status, docs_ok, tokens, chunks_embedded, chunks_reused, tokens_reused"
        " FROM embedkeeper.runs WHERE id = %s",
        (run_id,),
    ).fetchone()
    assert row == ("ok", 2, 200, 5, 3, 120)


def test_a_pass_records_the_chunks_it_sent(conn, db_url, make_app):
    """Until a pass reuses vectors, every chunk written was sent: the run's chunks_embedded is
    the pair's chunks, and nothing is counted reused."""
    insert_docs(conn, ["one short text", "another " * 400, "a third text"])
    app = make_app(source_config(db_url), ScriptedBackend())

    result = one_pass(app)

    chunks = conn.execute(f"SELECT count(*) FROM {CHUNKS}").fetchone()  # noqa: S608
    assert chunks is not None
    assert chunks[0] > 3  # the long text is cut in several
    row = conn.execute(
        "SELECT docs_ok, tokens, chunks_embedded, chunks_reused, tokens_reused"
        " FROM embedkeeper.runs WHERE trigger = 'backfill'"
    ).fetchone()
    assert row == (3, result.stats.tokens, chunks[0], 0, 0)
    assert result.stats.tokens > 0


def test_runs_from_before_the_columns_read_zero(conn):
    """Migration 0010 adds the columns with DEFAULT 0: older rows need no rewrite."""
    add_runs(conn, 2, days_ago=1)
    rows = conn.execute(
        "SELECT chunks_embedded, chunks_reused, tokens_reused FROM embedkeeper.runs"
    ).fetchall()
    assert rows == [(0, 0, 0), (0, 0, 0)]
