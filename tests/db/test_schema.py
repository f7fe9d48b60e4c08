"""Schema and sources: migrations match the models, every key type works, names are quoted."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine

from embedkeeper.commands.migrate import migrate, migrations_dir
from embedkeeper.config import ModelConfig
from embedkeeper.errors import DimensionMismatch, SchemaMissing, SourceNotFound
from embedkeeper.models import metadata
from embedkeeper.store.source.preflight import HEAD_REVISION
from tests.conftest import insert_docs, one_pass, source_config
from tests.fakes import ScriptedBackend


def names_of(app):
    return app.pair(app.config.models[0]).names


def test_head_revision_constant_is_alembics_head():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_match_the_models(db_url):
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(db_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_schemas": True, "include_name": _ours}
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def _ours(name, type_, parent_names):
    if type_ == "schema":
        return name == "embedkeeper"
    return not (type_ == "table" and name == "alembic_version")


def test_migrate_twice_is_a_no_op(db_url):
    assert migrate(db_url, source_config().source) == HEAD_REVISION


@pytest.mark.parametrize(
    ("key_sql", "keys"),
    [
        ("uuid", [uuid.UUID(int=1), uuid.UUID(int=2)]),
        ("text", ["b-key", "a-key"]),
        ("integer", [7, 3]),
    ],
)
def test_every_key_type_in_a_mixed_case_schema_and_table(bare_url, make_app, key_sql, keys):
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute(
            'CREATE SCHEMA archivo; CREATE TABLE archivo."Documento" '
            f'("Id" {key_sql} PRIMARY KEY, "Cuerpo" text)'
        )
        for key in keys:
            conn.execute('INSERT INTO archivo."Documento" VALUES (%s, %s)', (key, f"text {key}"))
    config = source_config(
        bare_url, table='archivo."Documento"', id_column='"Id"', text_column='"Cuerpo"'
    )
    migrate(bare_url, config.source)
    app = make_app(config, ScriptedBackend())

    one_pass(app)

    with psycopg.connect(bare_url) as conn:
        records = names_of(app).documents
        stored = conn.execute(sql.SQL("SELECT document_id FROM {}").format(records)).fetchall()
        assert sorted(r[0] for r in stored) == sorted(keys)
        assert app.coverage(conn, app.pair(app.config.models[0])).coverage_percent == 100.0


def test_hostile_names_are_quoted_not_executed(bare_url, make_app):
    hostile = 'docs"; DROP TABLE victim; --'
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (x int)")
        conn.execute(
            'CREATE TABLE "docs""; DROP TABLE victim; --" (id bigint PRIMARY KEY, "select" text)'
        )
        conn.execute('INSERT INTO "docs""; DROP TABLE victim; --" VALUES (1, \'hello\')')
    config = source_config(
        bare_url, table='"' + hostile.replace('"', '""') + '"', text_column='"select"'
    )
    migrate(bare_url, config.source)
    app = make_app(config, ScriptedBackend())
    one_pass(app)
    with psycopg.connect(bare_url) as conn:
        assert conn.execute("SELECT to_regclass('victim') IS NOT NULL").fetchone() == (True,)
        records = names_of(app).documents
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(records)).fetchone() == (1,)


def test_not_migrated_is_a_clear_error(bare_url, make_app):
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text)")
    with pytest.raises(SchemaMissing, match="run `embedkeeper migrate`"):
        make_app(source_config(bare_url))


def test_sources_with_bigint_text_and_uuid_keys_share_one_database(db_url, make_app, conn):
    """Each pair's tables have its source key's type: no cast, no "one key type per schema"."""
    conn.execute("CREATE TABLE uuids (id uuid PRIMARY KEY, body text)")
    conn.execute("CREATE TABLE texts (id text PRIMARY KEY, body text)")
    conn.execute("INSERT INTO uuids VALUES (%s, 'a uuid document')", (uuid.UUID(int=5),))
    conn.execute("INSERT INTO texts VALUES ('k-1', 'a text-keyed document')")
    insert_docs(conn, ["a bigint document"])
    for table, key in (("uuids", uuid.UUID(int=5)), ("texts", "k-1"), ("docs", 1)):
        app = make_app(source_config(db_url, table=table), ScriptedBackend())
        one_pass(app)
        records = names_of(app).documents
        assert conn.execute(sql.SQL("SELECT document_id FROM {}").format(records)).fetchall() == [
            (key,)
        ]
        assert app.coverage(conn, app.pair(app.config.models[0])).coverage_percent == 100.0


def test_a_bad_where_filter_is_refused_at_start(db_url, make_app):
    with pytest.raises(SourceNotFound, match=r"\[source\] where"):
        make_app(source_config(db_url, where="body LIKE"))


def test_dimensions_that_do_not_match_the_model_write_nothing(conn, db_url, make_app):
    conn.execute("INSERT INTO docs (id, body) VALUES (1, 'x')")
    config = source_config(db_url, models=[{"name": "minilm", "dimensions": 768}])
    app = make_app(config)
    with pytest.raises(DimensionMismatch, match="makes 384-d vectors; set dimensions = 384"):
        app.backend(config.models[0])
    assert conn.execute("SELECT count(*) FROM embedkeeper.models").fetchone() == (0,)


def test_stored_vectors_pin_a_model_names_dimensions(conn, db_url, make_app):
    conn.execute(
        "INSERT INTO embedkeeper.models (name, dimensions, backend, model_ref)"
        " VALUES ('minilm', 768, 'sentence-transformers', 'other')"
    )
    with pytest.raises(DimensionMismatch, match="already holds 768-d vectors"):
        make_app(source_config(db_url))


def test_max_tokens_beyond_the_models_window_is_refused():
    from embedkeeper.backends.local import SentenceTransformerBackend
    from embedkeeper.errors import ModelError

    with pytest.raises(ModelError, match="exceeds the model's window"):
        SentenceTransformerBackend(ModelConfig(name="m", device="cpu", max_tokens=100_000))


@pytest.mark.chaos
def test_reserved_words_and_unicode_names_are_quoted(bare_url, make_app):
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Ñandú"')
        conn.execute('CREATE TABLE "Ñandú"."select" ("from" uuid PRIMARY KEY, "where" text)')
        conn.execute(
            'INSERT INTO "Ñandú"."select" VALUES (%s, %s)', (uuid.UUID(int=7), "texto del ñandú")
        )
    config = source_config(
        bare_url, table='"Ñandú"."select"', id_column='"from"', text_column='"where"'
    )
    migrate(bare_url, config.source)
    app = make_app(config, ScriptedBackend())
    one_pass(app)
    with psycopg.connect(bare_url) as conn:
        records = names_of(app).documents
        rows = conn.execute(sql.SQL("SELECT document_id FROM {}").format(records)).fetchall()
    assert rows == [(uuid.UUID(int=7),)]
