"""A model's HNSW index: created, listed, dropped; dropped for a backfill and always rebuilt."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from embedkeeper.commands.backfill import backfill
from embedkeeper.errors import DatabaseError, EmbedkeeperError, UsageError
from embedkeeper.store.db import connect
from embedkeeper.store.index.deferred_index import _record_and_drop
from embedkeeper.store.index.index_build import BuildSettings, HnswParams
from embedkeeper.store.index.vector_index import (
    IndexTarget,
    create_index,
    drop_indexes,
    index_target,
    list_indexes,
    restore_indexes,
)
from embedkeeper.store.pair.tables import PairNames, PairRecord, ensure_pair
from tests.conftest import insert_docs, one_pass, source_config
from tests.fakes import ScriptedBackend, unit_vector

SMALL = BuildSettings(memory_mb=64, workers=0)


def target(
    conn: psycopg.Connection, source: str = "docs", table: str = "public.docs"
) -> IndexTarget:
    """The test pair's index target, its tables made if missing."""
    names = PairNames.of(source, "minilm")
    ensure_pair(conn, names, PairRecord(table, "bigint", 384, "vector"))
    return index_target(conn, names)


def index_state(conn: psycopg.Connection, name: str) -> tuple[bool, bool] | None:
    """(valid, ready) of embedkeeper.<name>, or None if it does not exist."""
    row = conn.execute(
        "SELECT indisvalid, indisready FROM pg_index"
        " WHERE indexrelid = to_regclass('embedkeeper.' || quote_ident(%s))",
        (name,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def wait_until_no_advisory_locks(conn: psycopg.Connection) -> None:
    """A closed session's locks go when its backend has exited, a moment after the close."""
    deadline = time.monotonic() + 10
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    while conn.execute(query).fetchone() != (0,):
        assert time.monotonic() < deadline, "a closed session still holds advisory locks"
        time.sleep(0.02)


def records(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT index_name, model FROM embedkeeper.deferred_indexes ORDER BY 1"
    ).fetchall()


def embedded_app(conn, db_url, make_app, count: int = 60):
    insert_docs(conn, [f"document number {i}" for i in range(count)])
    app = make_app(source_config(db_url), ScriptedBackend())
    one_pass(app)
    return app


def test_index_create_makes_an_index_the_planner_uses_and_drop_removes_it(conn, db_url, make_app):
    embedded_app(conn, db_url, make_app)

    name, built = create_index(conn, target(conn), HnswParams(), SMALL)

    assert (name, built) == ("docs__minilm_hnsw", True)
    assert index_state(conn, name) == (True, True)
    [listed] = list_indexes(conn, target(conn))
    assert (listed.name, listed.model, listed.state) == (name, "minilm", "live")
    assert "USING hnsw (embedding vector_cosine_ops)" in listed.definition
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN (COSTS OFF) SELECT document_id FROM embedkeeper.docs__minilm_chunks"
                " ORDER BY embedding <=> %s LIMIT 10",
                (unit_vector("query"),),
            )
        )
    assert f"Index Scan using {name} on docs__minilm_chunks" in plan
    assert create_index(conn, target(conn), HnswParams(), SMALL) == (name, False)  # idempotent

    assert drop_indexes(conn, target(conn)) == [name]
    assert index_state(conn, name) is None
    assert list_indexes(conn, target(conn)) == []


def test_a_deferred_backfill_drops_the_index_while_it_writes_and_ends_with_it_valid(
    conn, db_url, make_app
):
    create_index(conn, target(conn), HnswParams(opclass="l2"), SMALL)  # on an empty table
    insert_docs(conn, [f"text {i}" for i in range(300)])
    seen: list[tuple[object, object]] = []

    def look(documents):
        with connect(db_url) as other:
            seen.append((index_state(other, "docs__minilm_hnsw"), records(other)))

    app = make_app(source_config(db_url), ScriptedBackend(during=look))
    config = app.config

    result = backfill(app, config.models, defer_index=True, index_settings=SMALL)

    assert seen[0] == (None, [("docs__minilm_hnsw", "minilm")])  # dropped, recorded
    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []
    assert result.results["minilm"].stats.ok == 300
    assert app.coverage(conn, app.pair(app.config.models[0])).coverage_percent == 100.0
    [index] = list_indexes(conn, target(conn))
    assert "vector_l2_ops" in index.definition  # rebuilt as it was, not as the default


def test_an_index_dropped_by_a_backfill_that_died_is_rebuilt_by_the_next_backfill(
    conn, db_url, make_app
):
    app = embedded_app(conn, db_url, make_app)
    create_index(conn, target(conn), HnswParams(m=8, ef_construction=32), SMALL)
    _record_and_drop(conn, target(conn))  # as a deferring backfill does, then it dies
    assert index_state(conn, "docs__minilm_hnsw") is None
    assert [i.state for i in list_indexes(conn, target(conn))] == ["deferred"]

    backfill(app, app.config.models)  # nothing to embed; it still restores

    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []
    [index] = list_indexes(conn, target(conn))
    assert "WITH (m='8', ef_construction='32')" in index.definition


def test_index_create_restores_a_recorded_index_and_waits_for_a_running_deferral(
    conn, db_url, make_app
):
    embedded_app(conn, db_url, make_app)
    create_index(conn, target(conn), HnswParams(), SMALL)
    _record_and_drop(conn, target(conn))
    with connect(db_url) as peer:  # a deferring backfill that is still running
        peer.execute(
            "SELECT pg_advisory_lock_shared(hashtext('embedkeeper:index'), hashtext('docs:minilm'))"
        )
        assert restore_indexes(conn, target(conn), SMALL) is False
        with pytest.raises(EmbedkeeperError, match="--defer-index is running"):
            create_index(conn, target(conn), HnswParams(), SMALL)
        assert index_state(conn, "docs__minilm_hnsw") is None
    wait_until_no_advisory_locks(conn)  # the peer's session is gone (it died)
    assert create_index(conn, target(conn), HnswParams(), SMALL) == ("docs__minilm_hnsw", False)
    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []


def test_two_deferring_backfills_leave_the_rebuild_to_the_last_one_out(conn, db_url, make_app):
    embedded_app(conn, db_url, make_app)
    create_index(conn, target(conn), HnswParams(), SMALL)
    from embedkeeper.store.index.deferred_index import indexes_deferred

    with indexes_deferred(db_url, target(conn), SMALL) as first:
        with indexes_deferred(db_url, target(conn), SMALL) as second:
            assert (first, second) == (["docs__minilm_hnsw"], [])
        assert index_state(conn, "docs__minilm_hnsw") is None  # the first still writes
    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []


def test_a_record_that_is_not_a_vector_index_definition_is_never_run(conn, db_url, make_app):
    embedded_app(conn, db_url, make_app)
    conn.execute("CREATE TABLE public.victim (x int)")
    conn.execute(
        "INSERT INTO embedkeeper.deferred_indexes (index_name, source, model, definition)"
        " VALUES ('evil', 'docs', 'minilm', 'DROP TABLE public.victim')"
    )
    with pytest.raises(
        DatabaseError, match=r"not a vector index on embedkeeper\.docs__minilm_chunks"
    ):
        restore_indexes(conn, target(conn), SMALL)
    assert conn.execute("SELECT to_regclass('public.victim') IS NOT NULL").fetchone() == (True,)
    assert records(conn) == [("evil", "minilm")]  # kept for the operator to look at


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (HnswParams(opclass="dot"), 'unknown opclass "dot"; use one of cosine, l2, ip'),
        (HnswParams(m=1), "--m 1 is out of range; pgvector takes 2 to 100"),
        (HnswParams(m=16, ef_construction=20), "--ef-construction 20 is out of range"),
    ],
)
def test_bad_hnsw_parameters_are_usage_errors(params, message):
    with pytest.raises(UsageError, match=message):
        params.check()


def test_a_pair_without_tables_is_a_clear_error(conn):
    with pytest.raises(EmbedkeeperError, match='model "new" has no tables yet'):
        index_target(conn, PairNames.of("docs", "new"))


def test_stop_is_honoured_and_the_index_still_comes_back(conn, db_url, make_app):
    create_index(conn, target(conn), HnswParams(), SMALL)
    insert_docs(conn, [f"text {i}" for i in range(100)])
    stop = threading.Event()
    app = make_app(source_config(db_url), ScriptedBackend(during=lambda docs: stop.set()))

    result = backfill(app, app.config.models, stop=stop, defer_index=True, index_settings=SMALL)

    assert result.interrupted
    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []


def test_the_daemon_rebuilds_an_index_a_dead_backfill_left_dropped(conn, db_url, make_app):
    from embedkeeper.service.worker import Worker

    app = embedded_app(conn, db_url, make_app)
    create_index(conn, target(conn), HnswParams(), SMALL)
    _record_and_drop(conn, target(conn))

    Worker(app, threading.Event()).restore_indexes()

    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []


def test_a_deferral_whose_lock_session_dies_still_rebuilds_at_the_end(conn, db_url, make_app):
    create_index(conn, target(conn), HnswParams(), SMALL)
    insert_docs(conn, [f"text {i}" for i in range(50)])

    def kill_lock_session(documents):
        with connect(db_url) as other:
            other.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_locks"
                " WHERE locktype = 'advisory' AND mode = 'ShareLock'"
            )

    app = make_app(source_config(db_url), ScriptedBackend(during=kill_lock_session))
    result = backfill(app, app.config.models, defer_index=True, index_settings=SMALL)

    assert result.results["minilm"].stats.ok == 50
    assert index_state(conn, "docs__minilm_hnsw") == (True, True)
    assert records(conn) == []


def test_a_graph_larger_than_maintenance_work_mem_is_logged(conn, db_url, make_app, caplog):
    embedded_app(conn, db_url, make_app, count=1000)

    with caplog.at_level("WARNING"):
        create_index(conn, target(conn), HnswParams(), BuildSettings(memory_mb=1, workers=0))

    assert "index_build_notice" in caplog.text
    assert "maintenance_work_mem" in caplog.text
