"""`embedkeeper stats` as a user runs it: after a real backfill, each figure is the one in the run
row it came from; the text form carries the sparkline; --since bounds the window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import pytest

from embedkeeper.records import RunStats
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.state.runs import finish_run, start_run
from tests.conftest import insert_docs
from tests.standin import StandIn


@pytest.fixture
def server(minilm) -> Iterator[StandIn]:
    standin = StandIn(minilm.model)
    yield standin
    standin.stop()


def ollama(url: str) -> list[dict[str, str]]:
    return [{"name": "nomic", "backend": "ollama", "model": "m", "url": url}]


def test_stats_json_figures_are_the_backfills_run(cli, conn, server):
    insert_docs(conn, [f"served text number {i}" for i in range(12)])
    cli.configure(models=ollama(server.url))
    assert cli("backfill").returncode == 0
    conn.execute("ANALYZE public.docs")
    run = conn.execute(
        "SELECT docs_ok, docs_failed, tokens, docs_per_s, tokens_per_s, finished_at,"
        " chunks_embedded, chunks_reused, tokens_reused"
        " FROM embedkeeper.runs WHERE model = 'nomic' AND status = 'ok'"
    ).fetchone()
    assert run is not None

    result = cli("stats", "--json")

    assert result.returncode == 0, result.stderr
    (stats,) = json.loads(result.stdout)
    assert stats["model"] == "nomic"
    assert stats["passes"] == 1
    assert stats["passes_by_status"] == {"ok": 1}
    assert (stats["docs_embedded"], stats["docs_failed"], stats["tokens"]) == run[:3]
    assert stats["tokens"] > 0
    assert (stats["docs_per_s"], stats["tokens_per_s"]) == run[3:5]
    assert (stats["median_docs_per_s"], stats["median_tokens_per_s"]) == run[3:5]
    assert stats["recent_docs_per_s"] == [run[3]]
    # A first backfill sends every chunk: 12 short texts, one chunk each, nothing reused.
    assert run[6:] == (12, 0, 0)
    assert (stats["tokens_embedded"], stats["tokens_reused"]) == (run[2], 0)
    assert (stats["chunks_embedded"], stats["chunks_reused"]) == (12, 0)
    assert stats["tokens_reused_percent"] == 0
    (recent,) = stats["recent_passes"]
    assert (recent["docs_embedded"], recent["tokens_embedded"], recent["chunks_embedded"]) == (
        12,
        run[2],
        12,
    )
    assert stats["last_success_at"] == run[5].isoformat()
    assert 0 <= stats["last_success_age_s"] < 120
    assert (stats["pending"], stats["eta_s"], stats["in_review"]) == (0, 0.0, 0)


def test_stats_text_shows_the_figures_and_a_sparkline(cli, conn):
    insert_docs(conn, [f"text {i}" for i in range(100)])
    conn.execute("ANALYZE public.docs")
    for minutes, ok in ((50, 100), (40, 400), (30, 200), (20, 800)):
        conn.execute(
            "INSERT INTO embedkeeper.runs (source, model, trigger, status, started_at,"
            " finished_at, docs_ok, tokens, docs_per_s, tokens_per_s)"
            " VALUES ('docs', 'minilm', 'schedule', 'ok',"
            " now() - make_interval(mins => %s), now() - make_interval(mins => %s) + interval"
            " '10 seconds', %s, %s, %s, %s)",
            (minutes, minutes, ok, ok * 10, ok / 10, ok),
        )
    conn.execute(
        "INSERT INTO embedkeeper.runs (source, model, trigger, status, started_at, finished_at,"
        " docs_ok) VALUES ('docs', 'minilm', 'backfill', 'ok', now() - interval '3 hours',"
        " now() - interval '3 hours', 5000)"
    )

    result = cli("stats", "--since", "1h")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("minilm  (last 1h;")
    assert "  passes        4: 4 ok" in lines
    assert "  documents     1,500 embedded, 0 failed, 15,000 tokens" in lines
    assert any(line.startswith("  last pass     80.0 docs/s, 800 tokens/s") for line in lines)
    assert "  median        30.0 docs/s, 300 tokens/s (passes that embedded)" in lines
    assert "  recent        ▂▅▃█  docs/s of the last 4 passes that embedded, 10.0 to 80.0" in lines
    # 100 documents, no vector: 100 pending at the median 30 docs/s
    assert "  backlog       ~100 pending (estimate), ETA 3.3 s at the median rate" in lines
    assert "  in review     0" in lines


def test_stats_show_what_an_edit_cost(cli, conn):
    """A pass that re-embedded an edited document sent 2 chunks and kept 3: `stats` shows both,
    in JSON and in text, beside the first backfill that sent everything."""
    pair = cast(Pair, SimpleNamespace(source_name="docs", model_name="minilm"))
    backfill = start_run(conn, pair, "backfill")
    finish_run(conn, backfill, RunStats(ok=4, chunks=10, tokens=400), status="ok")
    edit = start_run(conn, pair, "schedule")
    finish_run(
        conn,
        edit,
        RunStats(ok=1, chunks=5, tokens=200, reused_chunks=3, reused_tokens=120),
        status="ok",
    )

    result = cli("stats", "--json")

    assert result.returncode == 0, result.stderr
    (stats,) = json.loads(result.stdout)
    assert (stats["tokens"], stats["tokens_embedded"], stats["tokens_reused"]) == (600, 600, 120)
    assert (stats["chunks_embedded"], stats["chunks_reused"]) == (15, 3)
    assert stats["tokens_reused_percent"] == 17  # 120 of 720
    passes = [
        (p["run_id"], p["tokens_embedded"], p["tokens_reused"], p["chunks_embedded"])
        for p in stats["recent_passes"]
    ]
    assert passes == [(backfill, 400, 0, 10), (edit, 200, 120, 5)]
    assert stats["recent_passes"][-1]["chunks_reused"] == 3

    text = cli("stats")

    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "  documents     5 embedded, 0 failed, 600 tokens" in lines
    assert "  chunks        15 embedded, 3 reused (120 tokens, 17 % of the tokens)" in lines
    (last,) = [line for line in lines if line.startswith("  last pass ")]
    assert "(1 documents, 3 of 8 chunks reused, finished " in last


def test_a_bad_window_is_a_usage_error(cli):
    result = cli("stats", "--since", "soon")
    assert result.returncode == 2
    assert 'a duration such as "30m", "24h" or "7d"' in result.stderr


def test_an_unknown_model_names_the_models(cli):
    result = cli("stats", "--model", "nope")
    assert result.returncode == 1
    assert 'no model named "nope"' in result.stderr
