"""A pair's chunks have no foreign key to its records (alembic 0011): the code deletes a record's
chunks wherever it deletes the record. These pin what the key did: a prune leaves no chunk
without its record, even one a writer committed while the prune waited for the record's lock,
and the migration drops the key from a pair made before it (its downgrade puts it back)."""

from __future__ import annotations

import threading

import psycopg
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine

from alembic import command
from embedkeeper.commands.migrate import migrations_dir
from embedkeeper.store.pass_io.prune import prune_deleted
from tests.conftest import one_pass
from tests.db.test_change_driven import BACKFILL, app_on_updated_at, old_docs
from tests.fakes import ScriptedBackend
from tests.pairs import CHUNKS, RECORDS

FOREIGN_KEYS = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass"


def chunks_of(conn, document_id: int) -> int:
    query = f"SELECT count(*) FROM {CHUNKS} WHERE document_id = %s"  # noqa: S608
    return conn.execute(query, (document_id,)).fetchone()[0]


def test_a_prune_deletes_the_chunks_a_writer_committed_while_it_waited(conn, db_url, make_app):
    old_docs(conn, 3)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    one_pass(app, BACKFILL)
    pair = app.pair(app.config.models[0])
    # A writer replacing document 2 (as ChunkWriter.replace does: record updated, old chunks
    # deleted, new ones copied), its transaction still open while the document is deleted.
    writer = psycopg.connect(db_url)
    writer.execute(f"UPDATE {RECORDS} SET chunk_count = 2 WHERE document_id = 2")  # noqa: S608
    writer.execute(f"DELETE FROM {CHUNKS} WHERE document_id = 2")  # noqa: S608
    writer.execute(
        f"INSERT INTO {CHUNKS} (document_id, chunk, char_start, char_end, passage, embedding)"  # noqa: S608
        " SELECT 2, n, 0, 1, 'd', embedding FROM "
        f"{CHUNKS} CROSS JOIN generate_series(0, 1) AS n WHERE document_id = 1"
    )
    conn.execute("DELETE FROM docs WHERE id = 2")
    pruned: list[int | None] = []
    with psycopg.connect(db_url, autocommit=True) as pruner:
        prune = threading.Thread(target=lambda: pruned.append(prune_deleted(pruner, pair)))
        prune.start()
        prune.join(0.5)
        assert prune.is_alive()  # waiting for the writer's lock on the record
        writer.commit()
        prune.join(10)
    writer.close()

    assert pruned == [1]
    assert chunks_of(conn, 2) == 0  # the chunks the writer committed went with their record
    assert (chunks_of(conn, 1), chunks_of(conn, 3)) == (1, 1)
    records = f"SELECT document_id FROM {RECORDS} ORDER BY 1"  # noqa: S608
    assert conn.execute(records).fetchall() == [(1,), (3,)]


def _alembic(url: str, verb: str, revision: str) -> None:
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url))
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["document_id_type"] = "bigint"
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            getattr(command, verb)(cfg, revision)
    finally:
        engine.dispose()


def test_migration_0011_drops_the_chunks_foreign_key_and_its_downgrade_restores_it(
    conn, db_url, make_app
):
    old_docs(conn, 3)
    app = app_on_updated_at(make_app, db_url, ScriptedBackend())
    one_pass(app, BACKFILL)
    app.close()
    assert conn.execute(FOREIGN_KEYS, (CHUNKS,)).fetchone() == (0,)  # made without it
    # A chunk no record holds: the downgrade deletes it before it adds the key back.
    conn.execute(
        f"INSERT INTO {CHUNKS} SELECT 99, chunk, char_start, char_end, passage, embedding"  # noqa: S608
        f" FROM {CHUNKS} WHERE document_id = 1"
    )

    _alembic(db_url, "downgrade", "0010")
    assert conn.execute(FOREIGN_KEYS, (CHUNKS,)).fetchone() == (1,)
    assert (chunks_of(conn, 99), chunks_of(conn, 1)) == (0, 1)

    _alembic(db_url, "upgrade", "head")
    assert conn.execute(FOREIGN_KEYS, (CHUNKS,)).fetchone() == (0,)
    assert conn.execute(f"SELECT count(*) FROM {CHUNKS}").fetchone() == (3,)  # noqa: S608
