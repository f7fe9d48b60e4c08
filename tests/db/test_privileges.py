"""The core path runs under the least-privilege role of docs/operations.md, and its password is
never shown."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg
import pytest

from embedkeeper.commands.backfill import backfill
from embedkeeper.commands.migrate import make_pairs
from embedkeeper.errors import SourceNotFound
from embedkeeper.store.db import connect
from embedkeeper.store.pass_io import delete_log
from embedkeeper.store.state import sync_state
from tests.conftest import insert_docs, one_pass, source_config, vectors
from tests.db.test_change_driven import BACKFILL, SCHEDULED, flush_stats
from tests.fakes import ScriptedBackend

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SENTINEL = "S3ntinel-W0rker-Pw"


def documented_grants() -> str:
    text = OPERATIONS.read_text()
    block = re.search(
        r"<!-- least-privilege grants: begin -->\n```sql\n(.*?)```\n"
        r"<!-- least-privilege grants: end -->",
        text,
        re.S,
    )
    assert block, "docs/operations.md lost its grants block"
    return block.group(1)


@pytest.fixture
def worker_url(pg, db_url, conn):
    database = db_url.split("@/", 1)[1].split("?", 1)[0]
    conn.execute("CREATE TABLE public.documents (id bigint PRIMARY KEY, body text)")
    conn.execute("DROP ROLE IF EXISTS embedkeeper_worker")
    grants = documented_grants().replace("'change-me'", f"'{SENTINEL}'")
    grants = grants.replace("DATABASE app", f'DATABASE "{database}"')
    # As docs/operations.md says: after `migrate` (this database is at head; it makes the pair's
    # tables), and safe to run again.
    make_pairs(source_config(db_url, table="public.documents"))
    conn.execute(grants)
    conn.execute(grants)
    yield db_url.replace("postgresql://postgres:", f"postgresql://embedkeeper_worker:{SENTINEL}", 1)
    with pg.admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute("DROP ROLE IF EXISTS embedkeeper_worker")


def test_the_documented_grants_are_enough_for_a_backfill(worker_url, conn, make_app, caplog):
    insert_docs(conn, ["kept", "POISON"], start=1)
    conn.execute("INSERT INTO public.documents SELECT id, body FROM public.docs")
    config = source_config(worker_url, table="public.documents")

    with caplog.at_level(logging.DEBUG):
        app = make_app(config, ScriptedBackend(poison="POISON"))
        result = backfill(app, config.models)

    assert sorted(vectors(conn, source="documents")) == [1]
    assert result.exit_code == 3  # the failure was recorded too: the role can write failures
    with connect(worker_url) as worker:
        assert app.coverage(worker, app.pair(app.config.models[0])).embedded == 1
        assert worker.execute("SELECT current_user").fetchone() == ("embedkeeper_worker",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("INSERT INTO public.documents VALUES (9, 'x')")
    assert SENTINEL not in caplog.text


def test_a_role_that_cannot_read_the_source_gets_a_clear_error(worker_url, conn, make_app):
    conn.execute("CREATE TABLE public.secret (id bigint PRIMARY KEY, body text)")
    with pytest.raises(SourceNotFound, match="GRANT SELECT"):
        make_app(source_config(worker_url, table="public.secret"))


def test_the_worker_role_cannot_touch_indexes_and_says_who_can(worker_url, conn, make_app, caplog):
    from embedkeeper.errors import NotIndexOwner
    from embedkeeper.store.index.deferred_index import _record_and_drop
    from embedkeeper.store.index.index_build import BuildSettings, HnswParams
    from embedkeeper.store.index.vector_index import create_index
    from tests.db.test_vector_index import records, target

    def documents_target(conn):
        return target(conn, source="documents", table="public.documents")

    insert_docs(conn, ["one", "two"], start=1)
    conn.execute("INSERT INTO public.documents SELECT id, body FROM public.docs")
    create_index(conn, documents_target(conn), HnswParams(), BuildSettings(memory_mb=64, workers=0))
    config = source_config(worker_url, table="public.documents")
    app = make_app(config, ScriptedBackend())

    with pytest.raises(NotIndexOwner, match="needs their owner"):
        backfill(app, config.models, defer_index=True)
    assert records(conn) == []  # nothing dropped, nothing recorded

    _record_and_drop(conn, documents_target(conn))  # a deferring backfill of the owner died
    with caplog.at_level(logging.INFO):
        result = backfill(app, config.models)
    assert result.results["minilm"].stats.ok == 2  # the worker goes on without the index
    assert "index_not_restored model=minilm" in caplog.text
    assert records(conn) == [("documents__minilm_hnsw", "minilm")]


def test_the_documented_grants_are_enough_to_prune_from_the_delete_log(worker_url, conn, make_app):
    """The owner tracks deletes; the worker role's passes read and prune the log."""
    conn.execute(
        "ALTER TABLE public.documents"
        " ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now() - interval '1 day'"
    )
    conn.execute(
        "INSERT INTO public.documents (id, body) SELECT g, 'doc ' || g FROM generate_series(1, 4) g"
    )
    config = source_config(worker_url, table="public.documents", updated_at_column="updated_at")
    app = make_app(config, ScriptedBackend())
    delete_log.track(conn, config.source)
    one_pass(app, BACKFILL)
    conn.execute("DELETE FROM public.documents WHERE id = 2")
    flush_stats(conn)

    result = one_pass(app, SCHEDULED)

    assert result.deleted == 1
    assert sorted(vectors(conn, source="documents")) == [1, 3, 4]
    assert sync_state.load(conn, app.pair(app.config.models[0])).deletes_logged == 1
