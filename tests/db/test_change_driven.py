"""Scheduled passes whose cost follows the change: the updated_at watermark, the retry queue, the
prune that runs only when the table saw deletes, and the sweep that is the net under both."""

from __future__ import annotations

import json

from embedkeeper.commands.migrate import make_pairs
from embedkeeper.store.db import connect
from embedkeeper.store.locks import claim_space
from embedkeeper.store.state import sync_state
from embedkeeper.sync.plan import PassOptions
from tests.conftest import MINILM_ENTRY, insert_docs, one_pass, source_config, vectors
from tests.fakes import ScriptedBackend
from tests.pairs import RECORDS

BACKFILL = PassOptions.backfill()
SCHEDULED = PassOptions(
    trigger="schedule", stale_by="updated_at", retry_failed_now=False, changes_only=True
)
SWEEP = PassOptions.sweep()


def app_on_updated_at(make_app, db_url, backend, **source):
    config = source_config(db_url, updated_at_column="updated_at", **source)
    return make_app(config, backend)


def old_docs(conn, count):
    """Documents last changed a day ago, as most of a real table is."""
    insert_docs(conn, [f"document {i}" for i in range(1, count + 1)])
    conn.execute("UPDATE docs SET updated_at = now() - interval '1 day'")


def flush_stats(conn):
    """PostgreSQL publishes a session's table counters up to a second late; tests don't wait:
    this makes the session publish what it has done before it answers."""
    conn.execute("SELECT pg_stat_force_next_flush()")


def test_a_scheduled_pass_walks_from_the_watermark_and_the_sweep_catches_the_rest(
    conn, db_url, make_app
):
    old_docs(conn, 20)
    backend = ScriptedBackend()
    app = app_on_updated_at(make_app, db_url, backend)
    assert one_pass(app, BACKFILL).stats.ok == 20
    newest = conn.execute("SELECT max(updated_at) FROM docs").fetchone()[0]
    assert sync_state.load(conn, app.pair(app.config.models[0])).watermark == newest

    conn.execute("UPDATE docs SET body = 'edited', updated_at = now() WHERE id = 3")
    insert_docs(conn, ["brand new"], start=21)
    # Inserted with an updated_at far behind the watermark: invisible to the change walk.
    insert_docs(conn, ["back-dated"], start=22)
    conn.execute("UPDATE docs SET updated_at = now() - interval '2 days' WHERE id = 22")
    backend.embedded.clear()

    assert one_pass(app, SCHEDULED).stats.ok == 2
    assert sorted(backend.embedded) == [3, 21]
    assert one_pass(app, SCHEDULED).stats.ok == 0
    assert one_pass(app, SWEEP).stats.ok == 1
    assert sorted(vectors(conn)) == list(range(1, 23))


def test_the_watermark_stays_below_a_document_a_peer_held(conn, db_url, make_app):
    old_docs(conn, 5)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend(), watermark_lag="1s")
    one_pass(app, BACKFILL)
    conn.execute(
        "UPDATE docs SET body = 'edit 2', updated_at = now() - interval '1 hour' WHERE id = 2"
    )
    conn.execute("UPDATE docs SET body = 'edit 4', updated_at = now() WHERE id = 4")
    with connect(db_url) as peer:
        peer.execute(
            "SELECT pg_advisory_lock(hashtext(%s), hashtext('2'))", (claim_space("docs", "minilm"),)
        )
        held = one_pass(app, SCHEDULED)
        assert held.stats.ok == 1  # doc 4; doc 2 is the peer's
    # The peer let go without writing: the next pass must still see doc 2.
    doc2 = conn.execute("SELECT updated_at FROM docs WHERE id = 2").fetchone()[0]
    assert sync_state.load(conn, app.pair(app.config.models[0])).watermark <= doc2
    assert one_pass(app, SCHEDULED).stats.ok == 1
    hashes = conn.execute(
        "SELECT count(*) FROM docs d"
        " JOIN embedkeeper.docs__minilm_documents e ON e.document_id = d.id"
        " WHERE e.content_hash = decode(md5(d.body), 'hex')"
    ).fetchone()
    assert hashes == (5,)


def test_deletes_are_pruned_by_the_next_scheduled_pass_and_otherwise_it_skips_the_prune(
    conn, db_url, make_app
):
    old_docs(conn, 4)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    one_pass(app, BACKFILL)
    # A stray vector with no document, left by nothing embedkeeper did: only a full prune sees it.
    conn.execute(
        "INSERT INTO embedkeeper.docs__minilm_documents (document_id, content_hash, chunking,"
        " chunk_count, token_count, truncated) SELECT 99, content_hash, chunking, 1, 0, false"
        " FROM embedkeeper.docs__minilm_documents WHERE document_id = 1"
    )

    skipped = one_pass(app, SCHEDULED)
    assert skipped.deleted == 0
    stray = f"SELECT count(*) FROM {RECORDS} WHERE document_id = 99"  # noqa: S608
    assert conn.execute(stray).fetchone() == (1,)

    conn.execute("DELETE FROM docs WHERE id = 2")
    flush_stats(conn)
    pruned = one_pass(app, SCHEDULED)
    assert pruned.deleted == 2  # the deleted document's vector, and the stray one
    assert sorted(vectors(conn)) == [1, 3, 4]


def test_a_document_edited_to_blank_loses_its_vector_with_no_delete(conn, db_url, make_app):
    old_docs(conn, 3)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    one_pass(app, BACKFILL)
    conn.execute("UPDATE docs SET body = '  ', updated_at = now() WHERE id = 1")

    result = one_pass(app, SCHEDULED)

    assert result.deleted == 1
    assert sorted(vectors(conn)) == [2, 3]


def test_documents_edited_out_of_the_filter_or_to_a_blank_expression_lose_their_vectors(
    conn, db_url, make_app
):
    old_docs(conn, 4)
    app = app_on_updated_at(
        make_app,
        db_url,
        ScriptedBackend(),
        where="body NOT LIKE 'archived%'",
        text_column=None,
        text_expression="nullif(body, 'nothing')",
    )
    one_pass(app, BACKFILL)
    assert sorted(vectors(conn)) == [1, 2, 3, 4]
    conn.execute("UPDATE docs SET body = 'archived 1', updated_at = now() WHERE id = 1")
    conn.execute("UPDATE docs SET body = 'nothing', updated_at = now() WHERE id = 2")
    conn.execute("UPDATE docs SET body = 'still here', updated_at = now() WHERE id = 3")

    result = one_pass(app, SCHEDULED)

    assert (result.deleted, result.stats.ok) == (2, 1)
    assert sorted(vectors(conn)) == [3, 4]


def test_a_failed_document_is_retried_from_the_failures_when_due(conn, db_url, make_app):
    old_docs(conn, 3)
    conn.execute("UPDATE docs SET body = 'poison pill' WHERE id = 2")
    app = app_on_updated_at(make_app, db_url, ScriptedBackend(poison="poison"))
    one_pass(app, SCHEDULED)  # no watermark yet: a full walk, doc 2 fails once
    assert sorted(vectors(conn)) == [1, 3]
    conn.execute(
        "UPDATE embedkeeper.docs__minilm_failures SET next_retry_at = now() - interval '1s'"
    )

    healthy = app_on_updated_at(make_app, db_url, ScriptedBackend())
    result = one_pass(healthy, SCHEDULED)

    assert result.stats.ok == 1
    assert sorted(vectors(conn)) == [1, 2, 3]
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_failures").fetchone() == (0,)


def test_other_source_settings_start_over_with_a_full_walk(conn, db_url, make_app):
    old_docs(conn, 3)
    one_pass(app_on_updated_at(make_app, db_url, ScriptedBackend()), BACKFILL)
    insert_docs(conn, ["back-dated"], start=4)
    conn.execute("UPDATE docs SET updated_at = now() - interval '2 days' WHERE id = 4")

    filtered = app_on_updated_at(make_app, db_url, ScriptedBackend(), where="id > 0")
    result = one_pass(filtered, SCHEDULED)

    assert result.stats.ok == 1
    assert sorted(vectors(conn)) == [1, 2, 3, 4]


def test_an_interrupted_or_limited_pass_leaves_the_watermark_alone(conn, db_url, make_app):
    old_docs(conn, 10)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    limited = PassOptions.backfill(limit=4)

    one_pass(app, limited)

    assert sync_state.load(conn, app.pair(app.config.models[0])).watermark is None
    assert one_pass(app, SCHEDULED).stats.ok == 6  # still a full walk


def test_a_missing_index_on_updated_at_is_a_warning_that_names_the_fix(conn, caplog):
    from embedkeeper.store.source.preflight import inspect_source

    source = source_config(updated_at_column="updated_at").source
    inspect_source(conn, source)
    warned = [r.getMessage() for r in caplog.records if "updated_at_not_indexed" in r.getMessage()]
    assert len(warned) == 1
    assert 'hint="CREATE INDEX ON public.docs (updated_at, id)"' in warned[0]

    caplog.clear()
    conn.execute("CREATE INDEX ON docs (updated_at, id)")
    inspect_source(conn, source)
    assert not [r for r in caplog.records if "updated_at_not_indexed" in r.getMessage()]


def test_a_failed_background_prune_loses_nothing(conn, db_url, make_app, monkeypatch, caplog):
    import embedkeeper.sync.background_prune
    from embedkeeper.errors import DatabaseError

    old_docs(conn, 3)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    one_pass(app, BACKFILL)
    conn.execute("DELETE FROM docs WHERE id = 2")
    flush_stats(conn)

    def broken(*args, **kwargs):
        raise DatabaseError("database error while pruning: injected")

    monkeypatch.setattr(embedkeeper.sync.background_prune, "prune_deleted", broken)
    failed = one_pass(app, SCHEDULED)
    assert failed.deleted == 0
    assert sorted(vectors(conn)) == [1, 2, 3]
    assert any("prune_failed" in r.getMessage() for r in caplog.records)

    monkeypatch.undo()
    assert one_pass(app, SCHEDULED).deleted == 1  # the fingerprint was not recorded: again
    assert sorted(vectors(conn)) == [1, 3]


def test_a_change_of_chunking_settings_makes_a_scheduled_pass_walk_everything(
    conn, db_url, make_app
):
    """The watermark walk sees only changed rows; records of other chunking settings are found
    at the pass's start by two probes of the records' chunking index, and then all is walked."""
    old_docs(conn, 6)
    entry = {**MINILM_ENTRY, "chunking": "none"}
    before = make_app(
        source_config(db_url, updated_at_column="updated_at", models=[entry]), ScriptedBackend()
    )
    assert one_pass(before, BACKFILL).stats.ok == 6
    assert one_pass(before, SCHEDULED).stats.ok == 0  # nothing changed: nothing walked

    after = app_on_updated_at(make_app, db_url, ScriptedBackend())  # chunking "text"
    make_pairs(after.config)  # the operator's act: migrate adopts the new settings
    assert one_pass(after, SCHEDULED).stats.ok == 6
    chunkings = conn.execute(f"SELECT DISTINCT chunking FROM {RECORDS}").fetchall()  # noqa: S608
    assert chunkings == [(after.chunking(after.config.models[0]).fingerprint,)]
    assert one_pass(after, SCHEDULED).stats.ok == 0

    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN (FORMAT JSON) "
            + after.pair(after.config.models[0]).statements.other_chunking_exists().as_string(conn),
            {"chunking": "text"},
        ).fetchone()
    assert "docs__minilm_chunking" in json.dumps(plan)
