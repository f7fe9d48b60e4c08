"""Failures: a poison document alone in review, outages charged to nobody, bad vectors refused."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from psycopg import sql

from embedkeeper.commands.backfill import backfill
from embedkeeper.errors import BackendUnavailable
from embedkeeper.store.db import connect
from embedkeeper.store.report.failures import (
    PairFailures,
    ignore_failures,
    list_failures,
    retry_failures,
)
from embedkeeper.sync.passes import PassContext, run_pass
from embedkeeper.sync.plan import PassOptions
from tests.conftest import insert_docs, source_config, vectors
from tests.fakes import ScriptedBackend
from tests.pairs import FAILURES

BACKFILL = PassOptions.backfill()


PAIR = PairFailures("minilm", sql.SQL(FAILURES), "bigint")


def failures(conn):
    return conn.execute(
        "SELECT document_id, attempts, status, error_class FROM embedkeeper.docs__minilm_failures"
        " ORDER BY document_id"
    ).fetchall()


def locks(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]


def test_a_poison_document_fails_alone_and_ends_in_review(conn, db_url, make_app):
    texts = [f"fine text {i}" for i in range(10)]
    texts[6] = "this one is POISON"
    insert_docs(conn, texts)
    backend = ScriptedBackend(poison="POISON")
    app = make_app(source_config(db_url), backend)

    result = backfill(app, app.config.models)

    assert sorted(vectors(conn)) == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    assert failures(conn) == [(7, 2, "review", "InputRejected")]  # max_attempts = 2
    assert result.exit_code == 3
    figures = app.coverage(conn, app.pair(app.config.models[0]))
    assert (figures.failed, figures.pending, figures.embedded) == (1, 0, 9)
    assert locks(conn) == 0


def test_a_failed_document_waits_for_its_retry_time_in_the_daemon(conn, db_url, make_app):
    insert_docs(conn, ["POISON here", "fine"])
    backend = ScriptedBackend(poison="POISON")
    app = make_app(source_config(db_url), backend)
    model = app.config.models[0]
    regular = PassOptions(
        trigger="schedule", stale_by="none", retry_failed_now=False, changes_only=False
    )

    run_pass(PassContext(app, app.pair(model), backend, regular, threading.Event()))
    calls = len(backend.calls)
    run_pass(PassContext(app, app.pair(model), backend, regular, threading.Event()))

    assert failures(conn) == [(1, 1, "retry", "InputRejected")]
    assert len(backend.calls) == calls  # not retried before next_retry_at
    conn.execute(
        "UPDATE embedkeeper.docs__minilm_failures SET next_retry_at = now() - interval '1s'"
    )
    run_pass(PassContext(app, app.pair(model), backend, regular, threading.Event()))
    assert failures(conn) == [(1, 2, "review", "InputRejected")]


def test_retry_requeues_and_ignore_drops_from_the_failed_count(conn, db_url, make_app):
    insert_docs(conn, ["POISON a", "POISON b", "fine"])
    app = make_app(source_config(db_url), ScriptedBackend(poison="POISON"))
    backfill(app, app.config.models)
    listed = list_failures(conn, PAIR, [], every=False)
    assert sorted((f.document_id, f.status, f.error_class) for f in listed) == [
        (1, "review", "InputRejected"),
        (2, "review", "InputRejected"),
    ]
    assert all("poison" in f.message for f in listed)

    assert ignore_failures(conn, PAIR, ["1"]) == 1
    figures = app.coverage(conn, app.pair(app.config.models[0]))
    assert (figures.failed, figures.ignored) == (1, 1)

    fixed = make_app(source_config(db_url), ScriptedBackend())
    assert retry_failures(conn, PAIR, ["2"]) == 1
    result = backfill(fixed, fixed.config.models)
    assert sorted(vectors(conn)) == [2, 3]
    assert failures(conn) == [(1, 2, "ignored", "InputRejected")]
    assert result.exit_code == 0


def test_an_edited_document_in_review_gets_a_fresh_start(conn, db_url, make_app):
    insert_docs(conn, ["POISON"])
    app = make_app(source_config(db_url), ScriptedBackend(poison="POISON"))
    backfill(app, app.config.models)
    conn.execute("UPDATE docs SET body = 'now it is fine' WHERE id = 1")

    result = backfill(app, app.config.models)

    assert sorted(vectors(conn)) == [1]
    assert failures(conn) == []
    assert result.exit_code == 0


def test_an_outage_charges_no_document_and_releases_its_claims(conn, db_url, make_app):
    insert_docs(conn, ["a", "b", "c"])
    backend = ScriptedBackend(outages=100)
    app = make_app(source_config(db_url), backend)
    model = app.config.models[0]

    with pytest.raises(BackendUnavailable):
        run_pass(PassContext(app, app.pair(model), backend, BACKFILL, threading.Event()))

    assert len(backend.calls) == app.config.retry.transient_attempts
    assert failures(conn) == []
    assert vectors(conn) == {}
    assert locks(conn) == 0
    status = conn.execute("SELECT status FROM embedkeeper.runs").fetchall()
    assert status == [("failed",)]


def test_a_short_outage_is_retried_and_then_everything_is_done(conn, db_url, make_app):
    insert_docs(conn, ["a", "b", "c"])
    backend = ScriptedBackend(outages=1)
    app = make_app(source_config(db_url), backend)
    result = backfill(app, app.config.models)
    assert sorted(vectors(conn)) == [1, 2, 3]
    assert failures(conn) == []
    assert result.exit_code == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.full(384, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(384, dtype=np.float32), "zero norm"),
        (np.ones(768, dtype=np.float32), "384-d"),
    ],
)
def test_a_bad_vector_is_that_documents_failure_never_a_row(conn, db_url, make_app, bad, message):
    insert_docs(conn, ["good", "BAD", "also good"])
    backend = ScriptedBackend(vector_for=lambda text: bad if text == "BAD" else None)
    app = make_app(source_config(db_url), backend)

    backfill(app, app.config.models)

    assert sorted(vectors(conn)) == [1, 3]
    assert failures(conn) == [(2, 2, "review", "InvalidVector")]
    text = conn.execute("SELECT message FROM embedkeeper.docs__minilm_failures").fetchone()[0]
    assert message in text


def test_a_document_edited_while_embedding_gets_no_stale_vector(conn, db_url, make_app):
    insert_docs(conn, ["original text", "other"])
    edited = threading.Event()

    def edit(documents) -> None:
        if not edited.is_set():
            edited.set()
            with connect(db_url) as other:
                other.execute("UPDATE docs SET body = 'edited text' WHERE id = 1")
                other.execute("DELETE FROM docs WHERE id = 2")

    app = make_app(source_config(db_url), ScriptedBackend(during=edit))
    backfill(app, app.config.models)

    stored = conn.execute(
        "SELECT e.document_id, e.content_hash = decode(md5(d.body), 'hex')"
        " FROM embedkeeper.docs__minilm_documents e JOIN docs d ON d.id = e.document_id"
    ).fetchall()
    assert stored == [(1, True)]  # re-embedded from the edited text in a later sweep
    assert sorted(vectors(conn)) == [1]


def test_ids_of_the_wrong_type_are_a_usage_error(conn):
    from embedkeeper.errors import UsageError

    with pytest.raises(UsageError, match=r"source key's type \(bigint\)") as error:
        retry_failures(conn, PAIR, ["abc"])
    assert error.value.exit_code == 2
