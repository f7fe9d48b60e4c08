"""The bounded history of `embedkeeper.runs`: runs older than `[runs] keep` are pruned, in
batches, by the finish-time index (migration 0006), never by a scan of the whole table."""

from __future__ import annotations

import json

from embedkeeper.store.state.runs import PRUNE, prune_runs


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
