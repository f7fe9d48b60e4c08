"""Claims: two workers never embed one document at once, and a dead worker's claims vanish."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import psycopg
import pytest

from embedkeeper.errors import DatabaseUnavailable
from embedkeeper.records import ChunkedEmbedding, EmbeddedChunk
from embedkeeper.store.db import connect
from embedkeeper.store.pass_io.claims import ClaimRules, claim_batch
from embedkeeper.store.pass_io.pg_store import PgStore
from embedkeeper.sync.plan import PassOptions
from tests.conftest import insert_docs, one_pass, source_config, vectors
from tests.fakes import ScriptedBackend, unit_vector
from tests.pairs import RECORDS, made_pair

RULES = ClaimRules(
    stale_by="none",
    retry_failed_now=False,
    prefix_chars=100,
    claim_chars=1 << 30,
    chunking="none",
)


def claim(conn, app, after=None, limit=10):
    return claim_batch(conn, pair_of(app), RULES, ("all", None), after, limit).claimed


def pair_of(app):
    with psycopg.connect(app.url) as setup:
        return made_pair(app, setup)


def store_on(session, app) -> PgStore:
    return PgStore(session, pair_of(app), RULES, retry=app.config.retry)


def advisory_locks(conn) -> int:
    row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    return row[0]


def test_a_peer_skips_documents_another_session_holds(conn, db_url, make_app):
    insert_docs(conn, [f"doc {i}" for i in range(10)])
    app = make_app(source_config(db_url))
    with connect(db_url) as a, connect(db_url) as b:
        first = claim(a, app, limit=4)
        second = claim(b, app, limit=10)
    assert [d.id for d in first.documents] == [1, 2, 3, 4]
    assert [d.id for d in second.documents] == [5, 6, 7, 8, 9, 10]
    assert second.last_key == 10


@pytest.mark.chaos
def test_claims_die_with_the_session(conn, db_url, make_app):
    insert_docs(conn, [f"doc {i}" for i in range(3)])
    app = make_app(source_config(db_url))
    dead = connect(db_url)
    assert len(claim(dead, app).documents) == 3
    dead.close()  # what kill -9 does to the socket
    with connect(db_url) as peer:
        assert [d.id for d in claim(peer, app).documents] == [1, 2, 3]


def test_claims_are_released_after_the_write(conn, db_url, make_app):
    insert_docs(conn, [f"doc {i}" for i in range(5)])
    app = make_app(source_config(db_url), ScriptedBackend())
    one_pass(
        app,
        PassOptions(trigger="test", stale_by="none", retry_failed_now=False, changes_only=False),
    )
    assert advisory_locks(conn) == 0
    assert len(vectors(conn)) == 5


def test_concurrent_workers_embed_each_document_exactly_once(conn, db_url, make_app):
    ids = insert_docs(conn, [f"document number {i}" for i in range(300)])
    backend = ScriptedBackend(delay_s=0.01)
    app = make_app(source_config(db_url, models=[{"name": "minilm", "claim_size": 7}]), backend)
    model = app.config.models[0]
    app.backend(model)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            one_pass(app, backend=backend)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    counts = Counter(backend.embedded)
    assert sorted(counts) == ids
    assert set(counts.values()) == {1}
    assert len(backend.calls) > 3  # the work was really shared out in batches
    row = conn.execute(
        "SELECT count(*), count(DISTINCT document_id) FROM embedkeeper.docs__minilm_documents"
    ).fetchone()
    assert row == (300, 300)


@pytest.mark.chaos
def test_a_stalled_workers_claims_expire_with_its_lease_and_its_late_write_lands_nowhere(
    conn, db_url, make_app
):
    insert_docs(conn, ["slow one", "slow two"])
    app = make_app(source_config(db_url))
    stalled = connect(db_url, lease_s=1.0)
    store = store_on(stalled, app)
    held = store.claim(None, 10).documents
    assert [d.id for d in held] == [1, 2]
    pid = stalled.info.backend_pid

    deadline = time.monotonic() + 30
    while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the idle session outlived its lease"
        time.sleep(0.2)
    with connect(db_url) as peer:
        assert [d.id for d in claim(peer, app).documents] == [1, 2]  # the claims expired

    late = [
        ChunkedEmbedding(
            d, "none", (EmbeddedChunk(0, 0, 4, d.text, unit_vector(d.text)),), 2, False
        )
        for d in held
    ]
    with pytest.raises(DatabaseUnavailable):
        store.save(late)
    assert vectors(conn) == {}
    stalled.close()


def test_a_claim_leaves_the_documents_of_a_batch_in_writing_to_it(conn, db_url, make_app):
    """A batch may still be in writing when the next claim runs (a new sweep, or the due
    retries after the changed rows) and meets its documents again: the advisory lock is
    re-entrant, so the store must pass over them and give the second lock back."""
    insert_docs(conn, ["one", "two", "three"])
    app = make_app(source_config(db_url))
    with connect(db_url) as session:
        store = store_on(session, app)
        in_writing = store.claim(None, 2).documents
        again = store.claim(None, 10)  # a sweep from the start before that batch is written

        assert [d.id for d in in_writing] == [1, 2]
        assert [d.id for d in again.documents] == [3]
        store.release(in_writing)
        assert advisory_locks(conn) == 1  # documents 1 and 2 are free: no second hold was left
        store.release(again.documents)
        assert advisory_locks(conn) == 0


def test_a_claim_compares_records_chunking_only_when_the_pass_start_saw_other_settings(
    conn, db_url, make_app
):
    insert_docs(conn, [f"doc {i}" for i in range(3)])
    app = make_app(source_config(db_url), ScriptedBackend())
    quiet = PassOptions(trigger="test", stale_by="none", retry_failed_now=False, changes_only=False)
    one_pass(app, quiet)
    pair = pair_of(app)
    # RULES's settings ("none") are not the records': comparing them, every record is stale;
    # told there are none of other settings, the claim is a walk of the missing only.
    with connect(db_url) as session:
        compared = claim_batch(session, pair, RULES, ("all", None), None, 10).claimed
    with connect(db_url) as session:
        skipped = replace(RULES, other_chunking=False)
        trusted = claim_batch(session, pair, skipped, ("all", None), None, 10).claimed
    assert [d.id for d in compared.documents] == [1, 2, 3]
    assert trusted.documents == []

    # A pass's start looks: a record of other settings makes its claims compare them.
    conn.execute(f"UPDATE {RECORDS} SET chunking = 'text:older' WHERE document_id = 2")  # noqa: S608
    result = one_pass(app, quiet)
    assert result.stats.ok == 1
    chunkings = conn.execute(f"SELECT DISTINCT chunking FROM {RECORDS}").fetchall()  # noqa: S608
    assert chunkings == [(app.chunking(app.config.models[0]).fingerprint,)]
