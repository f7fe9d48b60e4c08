"""`embedkeeper stats` figures on the real database: each one against the runs rows it came from,
and the backlog estimate against the rows it stands for, read without touching the source."""

from __future__ import annotations

import json
import statistics
from typing import Any

import psycopg

from embedkeeper.commands.stats import ModelStats
from embedkeeper.records import RunStats
from embedkeeper.store.report.backlog import Backlog, estimate_documents, measure_backlog
from embedkeeper.store.state.run_stats import BY_STATUS, LAST_SUCCESS, MEDIANS, RECENT, run_figures
from embedkeeper.store.state.runs import finish_run
from tests.conftest import insert_docs, source_config
from tests.pairs import made_pair

DAY_S = 86400.0


def add_run(
    conn: psycopg.Connection[Any],
    *,
    ago_s: float,
    status: str = "ok",
    ok: int = 0,
    failed: int = 0,
    tokens: int = 0,
    seconds: float = 10.0,
    model: str = "minilm",
) -> int:
    """A finished run that started `ago_s` seconds ago and took `seconds`, as finish_run writes
    it (a rate is its count over its duration)."""
    row = conn.execute(
        "INSERT INTO embedkeeper.runs (source, model, trigger, status, started_at, finished_at,"
        " docs_ok, docs_failed, tokens, docs_per_s, tokens_per_s)"
        " VALUES ('docs', %s, 'schedule', %s, now() - make_interval(secs => %s),"
        " now() - make_interval(secs => %s), %s, %s, %s, %s, %s) RETURNING id",
        (model, status, ago_s, ago_s - seconds, ok, failed, tokens, ok / seconds, tokens / seconds),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_figures_are_those_of_the_runs_in_the_window(conn):
    add_run(conn, ago_s=2 * DAY_S, ok=999, tokens=99_999)  # before the window
    add_run(conn, ago_s=5000, ok=100, failed=2, tokens=8000, seconds=10)
    add_run(conn, ago_s=4000, status="interrupted", ok=30, tokens=2400, seconds=6)
    add_run(conn, ago_s=3000)  # found nothing to do: no rate
    add_run(conn, ago_s=2000, status="failed", failed=1)
    last = add_run(conn, ago_s=1000, ok=50, tokens=5000, seconds=2)
    add_run(conn, ago_s=500, model="other", ok=7)
    conn.execute(
        "INSERT INTO embedkeeper.runs (source, model, trigger)"
        " VALUES ('docs', 'minilm', 'schedule')"
    )

    figures = run_figures(conn, "docs", "minilm", DAY_S)

    assert figures.passes == {"failed": 1, "interrupted": 1, "ok": 3, "running": 1}
    assert (figures.docs_embedded, figures.docs_failed, figures.tokens) == (180, 3, 15400)
    assert [p.docs_per_s for p in figures.recent] == [10.0, 5.0, 25.0]
    assert figures.last is not None
    assert (figures.last.run_id, figures.last.docs_ok, figures.last.tokens_per_s) == (
        last,
        50,
        2500.0,
    )
    assert figures.median_docs_per_s == statistics.median([10.0, 5.0, 25.0])
    assert figures.median_tokens_per_s == statistics.median([800.0, 400.0, 2500.0])
    assert figures.last_success_age_s is not None
    assert abs(figures.last_success_age_s - 998) < 60
    finished = conn.execute(
        "SELECT finished_at FROM embedkeeper.runs WHERE id = %s", (last,)
    ).fetchone()
    assert finished is not None
    assert figures.last_success_at == finished[0]


def test_what_the_passes_sent_and_reused_adds_up_and_shows_per_pass(conn):
    """tokens and chunks_embedded: what the model was sent; *_reused: what was kept."""
    first = add_run(conn, ago_s=3000, ok=4, tokens=900)  # a first backfill: everything sent
    finish_run(conn, first, RunStats(ok=4, tokens=900, chunks=9), status="ok")
    edit = add_run(conn, ago_s=1000, ok=2)
    finish_run(
        conn,
        edit,
        RunStats(ok=2, chunks=5, tokens=200, reused_chunks=3, reused_tokens=120),
        status="ok",
    )
    add_run(conn, ago_s=500, model="other", ok=7, tokens=70)  # another model's: not counted

    figures = run_figures(conn, "docs", "minilm", DAY_S)

    assert (figures.tokens, figures.tokens_reused) == (1100, 120)
    assert (figures.chunks_embedded, figures.chunks_reused) == (14, 3)
    assert [(p.run_id, p.tokens, p.tokens_reused) for p in figures.recent] == [
        (first, 900, 0),
        (edit, 200, 120),
    ]
    assert [(p.chunks_embedded, p.chunks_reused) for p in figures.recent] == [(9, 0), (5, 3)]

    shown = ModelStats(figures, Backlog("minilm", 0, 0, 0, 0), "docs").as_json()
    assert shown["tokens"] == shown["tokens_embedded"] == 1100
    assert (shown["tokens_reused"], shown["tokens_reused_percent"]) == (120, 10)  # 120 of 1220
    assert (shown["chunks_embedded"], shown["chunks_reused"]) == (14, 3)
    last = shown["recent_passes"][-1]
    assert last["run_id"] == edit
    assert (last["docs_embedded"], last["tokens_embedded"], last["tokens_reused"]) == (2, 200, 120)
    assert (last["chunks_embedded"], last["chunks_reused"]) == (5, 3)


def test_a_shorter_window_and_a_success_older_than_it(conn):
    add_run(conn, ago_s=7200, ok=10)
    add_run(conn, ago_s=600, status="failed", failed=1)

    figures = run_figures(conn, "docs", "minilm", 3600)

    assert figures.passes == {"failed": 1}
    assert figures.docs_embedded == 0
    assert figures.recent == ()
    assert figures.median_docs_per_s is None
    assert figures.last_success_age_s is not None
    assert figures.last_success_age_s > 7000  # the newest success, even outside the window


def test_the_recent_chart_is_bounded_and_oldest_first(conn):
    for i in range(40):
        add_run(conn, ago_s=4000 - i * 60, ok=i + 1, seconds=1)
    figures = run_figures(conn, "docs", "minilm", DAY_S, recent=30)
    assert [p.docs_per_s for p in figures.recent] == [float(i + 1) for i in range(10, 40)]


def test_the_backlog_reads_the_model_tables_not_the_source(db_url, conn, make_app):
    insert_docs(conn, [f"document {i}" for i in range(1, 41)])
    app = make_app(source_config(db_url))
    with psycopg.connect(db_url) as setup:
        pair = made_pair(app, setup)
    conn.execute(
        "INSERT INTO embedkeeper.docs__minilm_documents (document_id, content_hash, chunking,"
        " chunk_count, token_count, truncated)"
        " SELECT id, decode(md5(body), 'hex'), %s, 1, 3, false"
        " FROM public.docs WHERE id <= 25",
        (app.chunking(app.config.models[0]).fingerprint,),
    )
    for doc_id, status in ((30, "review"), (31, "ignored"), (32, "retry"), (20, "review")):
        conn.execute(
            "INSERT INTO embedkeeper.docs__minilm_failures (document_id, attempts, error_class,"
            " message, status, content_hash) SELECT id, 3, 'InputRejected', 'no', %s,"
            " decode(md5(body), 'hex') FROM public.docs WHERE id = %s",
            (status, doc_id),
        )
    conn.execute("ANALYZE public.docs")

    with psycopg.connect(db_url) as tx:  # one transaction: its own scan counters
        backlog = measure_backlog(tx, pair, made=True)
        scans = tx.execute(
            "SELECT pg_stat_get_xact_numscans(c.oid), pg_stat_get_xact_tuples_returned(c.oid)"
            " FROM pg_class AS c WHERE c.oid = 'public.docs'::regclass"
        ).fetchone()

    assert scans == (0, 0)
    # 40 documents, 25 with a vector, 30 and 31 parked; 20 is in review but has a vector
    assert (backlog.documents, backlog.embedded, backlog.parked) == (40, 25, 2)
    assert backlog.pending == 13
    assert backlog.in_review == 2
    exact = conn.execute(
        app.pair(app.config.models[0]).statements.coverage(),
        {"model": "minilm", "chunking": app.chunking(app.config.models[0]).fingerprint},
    ).fetchone()
    assert exact is not None
    assert exact[6] == backlog.pending  # the coverage query's pending, when nothing is stale


def test_the_backlog_leaves_out_null_texts_by_the_statistics(db_url, conn, make_app):
    insert_docs(conn, ["text", "  ", None, "more text", None, None, "a", "b"])
    conn.execute("ANALYZE public.docs")
    app = make_app(source_config(db_url))
    # the column's null fraction (3 of 8) is in the statistics; the text of spaces is not
    assert measure_backlog(conn, made_pair(app, conn), made=True).pending == 5


def test_the_backlog_estimate_honours_the_where_filter(db_url, conn, make_app):
    insert_docs(conn, [f"document {i}" for i in range(1, 201)])
    conn.execute("ANALYZE public.docs")
    app = make_app(source_config(db_url, where="id % 2 = 0 AND id > 0"))
    backlog = measure_backlog(conn, made_pair(app, conn), made=True)
    assert 0 < backlog.pending < 200  # the planner's guess at the filter, not the whole table


def test_each_statement_reads_the_models_window_by_index(conn):
    """Cheap on a long history: a year of another model's runs is never read."""
    conn.execute(
        "INSERT INTO embedkeeper.runs (model, trigger, status, started_at, finished_at, docs_ok)"
        " SELECT 'other', 'schedule', 'ok', t, t, 1 FROM (SELECT now() - g * interval '10 min'"
        " AS t FROM generate_series(1, 50000) AS g) AS s"
    )
    for i in range(50):
        add_run(conn, ago_s=100 + i * 600, ok=i)
    conn.execute("ANALYZE embedkeeper.runs")
    params = {"source": "docs", "model": "minilm", "since_s": DAY_S, "recent": 30}
    for statement in (BY_STATUS, MEDIANS, RECENT, LAST_SUCCESS):
        row = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchone()
        assert row is not None
        plan = json.dumps(row[0])
        assert '"Index Name": "runs_pair_started_idx"' in plan, statement
        assert "Seq Scan" not in plan, statement


def test_a_small_source_never_analyzed_is_counted_not_guessed(db_url, conn, make_app):
    """With no statistics the planner guesses from the table's pages: 20 long texts read as
    hundreds of rows. Such a table is small, so the backlog counts it."""
    conn.execute("ALTER TABLE public.docs SET (autovacuum_enabled = false)")
    insert_docs(conn, [f"help page {i} " + "text " * 8000 for i in range(20)])
    app = make_app(source_config(db_url))
    pair = made_pair(app, conn)
    assert estimate_documents(conn, pair.statements) != 20  # the planner's guess
    backlog = measure_backlog(conn, pair, made=True)
    assert (backlog.documents, backlog.pending, backlog.counted) == (20, 20, True)
    conn.execute("ANALYZE public.docs")  # with statistics, the estimate again: no scan
    analyzed = measure_backlog(conn, pair, made=True)
    assert (analyzed.documents, analyzed.counted) == (20, False)
