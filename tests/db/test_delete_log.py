"""The delete log (`embedkeeper deletes track`): a pass after deletes prunes the logged keys
instead of reading every key, and falls back to the full prune whenever the log is short."""

from __future__ import annotations

import pytest

from embedkeeper.store.db import connect
from embedkeeper.store.pass_io import delete_log
from embedkeeper.store.state import sync_state
from embedkeeper.sync import passes
from embedkeeper.sync.background_prune import BackgroundPrune
from tests.conftest import one_pass, vectors
from tests.db.test_change_driven import (
    BACKFILL,
    SCHEDULED,
    app_on_updated_at,
    flush_stats,
    old_docs,
)
from tests.fakes import ScriptedBackend


@pytest.fixture
def full_prunes(monkeypatch):
    """The passes that started the full prune after deletes (the anti-join of every key)."""
    started: list[str] = []

    def recording(*args, **kwargs):
        prune = BackgroundPrune(*args, **kwargs)
        if prune.from_log is None:
            started.append(prune.pair.model_name)
        return prune

    monkeypatch.setattr(passes, "BackgroundPrune", recording)
    return started


def logged_entries(conn) -> int:
    return conn.execute("SELECT count(*) FROM embedkeeper.deleted_documents").fetchone()[0]


def tracked_app(conn, db_url, make_app, count):
    old_docs(conn, count)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    delete_log.track(conn, app.config.source)
    one_pass(app, BACKFILL)  # a full prune: the baseline the log is checked against
    return app


def test_tracked_deletes_are_pruned_from_the_log_not_by_reading_every_key(
    conn, db_url, make_app, full_prunes
):
    app = tracked_app(conn, db_url, make_app, 6)
    conn.execute("DELETE FROM docs WHERE id IN (2, 5)")
    assert logged_entries(conn) == 2
    flush_stats(conn)

    result = one_pass(app, SCHEDULED)

    assert result.deleted == 2
    assert sorted(vectors(conn)) == [1, 3, 4, 6]
    assert full_prunes == []
    assert logged_entries(conn) == 0  # every model that follows the log has pruned them


def test_a_key_deleted_and_inserted_again_keeps_its_vector(conn, db_url, make_app, full_prunes):
    app = tracked_app(conn, db_url, make_app, 3)
    conn.execute("DELETE FROM docs WHERE id = 2")
    conn.execute("INSERT INTO docs (id, body, updated_at) VALUES (2, 'back again', now())")
    flush_stats(conn)

    result = one_pass(app, SCHEDULED)

    assert (result.deleted, result.stats.ok) == (0, 1)
    assert sorted(vectors(conn)) == [1, 2, 3]
    assert full_prunes == []


def test_a_delete_the_trigger_missed_brings_the_full_prune_then_the_log_again(
    conn, db_url, make_app, full_prunes
):
    app = tracked_app(conn, db_url, make_app, 6)
    conn.execute(f"ALTER TABLE docs DISABLE TRIGGER {delete_log.TRIGGER}")
    conn.execute("DELETE FROM docs WHERE id = 2")  # as logical replication would: not logged
    conn.execute(f"ALTER TABLE docs ENABLE TRIGGER {delete_log.TRIGGER}")
    conn.execute("DELETE FROM docs WHERE id = 3")
    flush_stats(conn)

    result = one_pass(app, SCHEDULED)

    assert result.deleted == 2
    assert sorted(vectors(conn)) == [1, 4, 5, 6]
    assert full_prunes == ["minilm"]  # the log held 1 delete, the table's counter 2

    conn.execute("DELETE FROM docs WHERE id = 4")
    flush_stats(conn)
    again = one_pass(app, SCHEDULED)

    assert again.deleted == 1
    assert sorted(vectors(conn)) == [1, 5, 6]
    assert full_prunes == ["minilm"]  # the full prune set a new baseline: the log again


def test_truncate_brings_the_full_prune(conn, db_url, make_app, full_prunes):
    app = tracked_app(conn, db_url, make_app, 3)
    conn.execute("TRUNCATE docs")  # no row triggers fire; the table's file changes
    flush_stats(conn)

    result = one_pass(app, SCHEDULED)

    assert result.deleted == 3
    assert vectors(conn) == {}
    assert full_prunes == ["minilm"]


def test_untrack_drops_the_trigger_and_the_log(conn, db_url, make_app):
    app = tracked_app(conn, db_url, make_app, 3)
    conn.execute("DELETE FROM docs WHERE id = 1")
    source = app.config.source
    with connect(db_url) as other:
        assert delete_log.is_tracking(other, source)
        delete_log.untrack(other, source)
        assert not delete_log.is_tracking(other, source)
    assert logged_entries(conn) == 0
    conn.execute("DELETE FROM docs WHERE id = 2")
    assert logged_entries(conn) == 0


def test_a_role_with_no_rights_on_embedkeeper_can_still_delete_and_is_logged(
    conn, db_url, make_app
):
    """The trigger runs in the deleting session: the application's roles must not need rights
    on schema embedkeeper, or tracking would break their deletes."""
    tracked_app(conn, db_url, make_app, 3)
    conn.execute("DROP ROLE IF EXISTS embedkeeper_test_app")
    conn.execute("CREATE ROLE embedkeeper_test_app")
    try:
        conn.execute("GRANT SELECT, DELETE ON docs TO embedkeeper_test_app")
        conn.execute("SET ROLE embedkeeper_test_app")
        conn.execute("DELETE FROM docs WHERE id = 3")
        conn.execute("RESET ROLE")
        assert logged_entries(conn) == 1
    finally:
        conn.execute("RESET ROLE")
        conn.execute("REVOKE ALL ON docs FROM embedkeeper_test_app")
        conn.execute("DROP ROLE embedkeeper_test_app")


def test_the_log_keeps_entries_until_every_active_model_has_pruned_them(conn, db_url, make_app):
    app = tracked_app(conn, db_url, make_app, 4)
    conn.execute(
        "INSERT INTO embedkeeper.sync_state (source, model, source_signature,"
        " delete_log_position, updated_at) VALUES ('docs', 'behind', 'x', 0, now()),"
        " ('docs', 'gone', 'x', 0, now() - interval '8 days')"
    )
    conn.execute("DELETE FROM docs WHERE id IN (1, 2)")
    flush_stats(conn)
    one_pass(app, SCHEDULED)
    assert logged_entries(conn) == 2  # model 'behind' follows the log and has not pruned them

    conn.execute("DELETE FROM embedkeeper.sync_state WHERE model = 'behind'")
    conn.execute("DELETE FROM docs WHERE id = 3")
    flush_stats(conn)
    one_pass(app, SCHEDULED)
    assert logged_entries(conn) == 0  # 'gone' has not moved for a week: it holds nothing back
    assert sorted(vectors(conn)) == [4]


def test_entries_a_peer_pruned_first_are_not_counted_twice(conn, db_url, make_app):
    app = tracked_app(conn, db_url, make_app, 3)
    source = app.config.source
    conn.execute("DELETE FROM docs WHERE id = 1")
    flush_stats(conn)
    upto = delete_log.position(conn, source)
    assert upto is not None  # tracked
    fingerprint = sync_state.table_fingerprint(conn, source)
    logged = delete_log.covering(
        conn, source, sync_state.load(conn, app.pair(app.config.models[0])), fingerprint, upto
    )
    assert logged is not None
    assert logged.entries == 1

    with connect(db_url) as one, connect(db_url) as other:
        pair = app.pair(app.config.models[0])
        first = delete_log.prune_from_log(one, pair, fingerprint, logged)
        second = delete_log.prune_from_log(other, pair, fingerprint, logged)

    assert (first, second) == (1, None)
    assert sync_state.load(conn, app.pair(app.config.models[0])).deletes_logged == 1
    assert sorted(vectors(conn)) == [2, 3]
