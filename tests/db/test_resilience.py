"""A connection cut mid-pass: reconnect, finish, nothing lost or doubled; --limit stops early."""

from __future__ import annotations

import threading

import pytest

from embedkeeper.commands.backfill import backfill
from embedkeeper.store.db import connect
from tests.conftest import database_name, insert_docs, source_config, vectors
from tests.fakes import ScriptedBackend
from tests.invariants import check_invariants

pytestmark = pytest.mark.chaos


def test_a_connection_cut_mid_batch_is_retried_and_loses_nothing(conn, db_url, make_app):
    ids = insert_docs(conn, [f"text {i}" for i in range(100)])
    cut = threading.Event()
    test_pid = conn.info.backend_pid

    def terminate_the_pass_connection(documents) -> None:
        if not cut.is_set():
            cut.set()
            with connect(db_url) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'embedkeeper' AND pid <> pg_backend_pid()"
                    " AND pid <> %s",
                    (test_pid,),
                )

    backend = ScriptedBackend(during=terminate_the_pass_connection)
    app = make_app(source_config(db_url), backend)

    result = backfill(app, app.config.models)

    assert cut.is_set()
    assert sorted(vectors(conn)) == ids
    row = conn.execute(
        "SELECT count(*), count(DISTINCT document_id) FROM embedkeeper.docs__minilm_documents"
    )
    assert row.fetchone() == (100, 100)
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_failures").fetchone() == (0,)
    assert result.exit_code == 0
    # the batch in flight when the connection died is embedded again, and only that batch
    assert len(backend.embedded) == 100 + len(backend.calls[0])
    # the lost session's batch came back whole: a live process's lost batch is no crash
    assert backend.calls[1] == backend.calls[0]
    assert conn.execute("SELECT count(*) FROM embedkeeper.inflight").fetchone() == (0,)
    check_invariants(conn)


def test_a_network_cut_mid_batch_reconnects_and_loses_nothing(conn, db_url, make_app, proxy):
    ids = insert_docs(conn, [f"text {i}" for i in range(100)])
    cut = threading.Event()

    def cut_the_network(documents) -> None:
        if not cut.is_set():
            cut.set()
            proxy.cut()

    backend = ScriptedBackend(during=cut_the_network)
    app = make_app(source_config(proxy.url(database_name(db_url))), backend)

    result = backfill(app, app.config.models)

    assert cut.is_set()
    assert result.exit_code == 0
    assert sorted(vectors(conn)) == ids
    assert len(backend.embedded) == 100 + len(backend.calls[0])
    # the lost session's batch came back whole: a live process's lost batch is no crash
    assert backend.calls[1] == backend.calls[0]
    assert conn.execute("SELECT count(*) FROM embedkeeper.inflight").fetchone() == (0,)
    check_invariants(conn)


def test_limit_stops_after_that_many_documents(conn, db_url, make_app):
    insert_docs(conn, [f"text {i}" for i in range(50)])
    app = make_app(source_config(db_url), ScriptedBackend())

    result = backfill(app, app.config.models, limit=20)

    assert len(vectors(conn)) == 20
    assert result.coverage[0].pending == 30
