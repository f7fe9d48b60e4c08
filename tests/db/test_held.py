"""A backfill whose documents another process holds waits for them before it reports, so that
its exit 0 still means every embeddable document is embedded; past claim_lease it says how many
are still held (exit 4). The other process is a session holding the documents' claims, exactly
as a peer instance's claiming session does."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from embedkeeper.commands.backfill import EXIT_STILL_HELD, backfill
from embedkeeper.store.db import connect
from embedkeeper.store.locks import claim_space
from tests.conftest import insert_docs, source_config, vectors
from tests.fakes import ScriptedBackend

HELD = [3, 4, 5, 6, 7]


@pytest.fixture
def peer(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Another instance's claiming session."""
    with connect(db_url) as session:
        yield session


def hold(session: psycopg.Connection[Any], ids: Sequence[int], model: str = "minilm") -> None:
    session.execute(
        "SELECT pg_advisory_lock(hashtext(%s), hashtext(x::text)) FROM unnest(%s::bigint[]) AS x",
        (claim_space("docs", model), list(ids)),
    )


def test_a_backfill_waits_for_held_documents_then_embeds_what_the_peer_let_go(
    conn, db_url, make_app, peer, caplog
):
    insert_docs(conn, [f"document {i}" for i in range(1, 21)])
    hold(peer, HELD)
    app = make_app(source_config(db_url), ScriptedBackend())
    caplog.set_level(logging.INFO)
    # The peer stops (unfinished) a second into the backfill's wait.
    let_go = threading.Timer(1.0, lambda: peer.execute("SELECT pg_advisory_unlock_all()"))
    let_go.start()
    try:
        result = backfill(app, app.config.models)
    finally:
        let_go.join()

    assert result.exit_code == 0
    assert sorted(vectors(conn)) == list(range(1, 21))
    assert result.coverage[0].pending == 0
    assert result.results["minilm"].stats.ok == 20
    assert "waiting_for_held model=minilm documents=5 timeout_s=600" in caplog.text
    assert "held_released model=minilm" in caplog.text
    runs = conn.execute("SELECT status, docs_ok FROM embedkeeper.runs ORDER BY id").fetchall()
    assert runs == [("ok", 15), ("ok", 5)]


def test_a_backfill_gives_up_on_held_documents_after_claim_lease_with_exit_4(
    conn, db_url, make_app, peer, caplog
):
    insert_docs(conn, [f"document {i}" for i in range(1, 21)])
    hold(peer, HELD)
    app = make_app(replace(source_config(db_url), claim_lease_s=2.0), ScriptedBackend())
    caplog.set_level(logging.INFO)

    result = backfill(app, app.config.models)

    assert result.exit_code == EXIT_STILL_HELD == 4
    assert result.held == {"minilm": 5}
    assert sorted(vectors(conn)) == [i for i in range(1, 21) if i not in HELD]
    assert result.coverage[0].pending == 5
    assert "waiting_for_held model=minilm documents=5 timeout_s=2" in caplog.text
    assert "held_timeout model=minilm documents=5" in caplog.text


def test_documents_held_by_another_model_do_not_hold_a_backfill_up(
    conn, db_url, make_app, peer, caplog
):
    insert_docs(conn, [f"document {i}" for i in range(1, 21)])
    hold(peer, HELD, model="other")
    app = make_app(source_config(db_url), ScriptedBackend())
    caplog.set_level(logging.INFO)

    result = backfill(app, app.config.models)

    assert result.exit_code == 0
    assert len(vectors(conn)) == 20
    assert "waiting_for_held" not in caplog.text


def test_passes_that_keep_meeting_held_documents_stop_at_claim_lease(
    conn, db_url, make_app, caplog
):
    """A peer that always holds something new when the pass walks by (released by the time we
    look) cannot keep a backfill re-running forever: past claim_lease it reports them held."""
    import threading as _threading

    from embedkeeper.records import RunStats
    from embedkeeper.sync.held import run_until_released
    from embedkeeper.sync.passes import PassContext, PassResult
    from embedkeeper.sync.plan import PassOptions

    app = make_app(source_config(db_url), ScriptedBackend())
    model = app.config.models[0]
    ctx = PassContext(
        app, app.pair(model), app.backend(model), PassOptions.backfill(), _threading.Event()
    )
    passes: list[int] = []
    now = [0.0]

    def run(_ctx: PassContext) -> PassResult:
        passes.append(1)
        now[0] += 250.0  # each pass takes 250 s of a 600 s lease
        return PassResult(RunStats(ok=1, drained=True), 0, "ok", held=(len(passes),))

    caplog.set_level(logging.INFO)
    result, still_held = run_until_released(ctx, run=run, clock=lambda: now[0])

    # The 600 s bound counts from the first pass's end (250 s): the next end at 500, 750 and
    # 1,000 s, and the last is past it.
    assert len(passes) == 4
    assert still_held == 1
    assert result.stats.ok == 4
    assert "held_timeout model=minilm documents=1" in caplog.text
