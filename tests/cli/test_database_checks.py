"""Start-up checks of the database and the source table, through the installed command: each
problem exits 1 with one line naming the fix, before anything is written (no model is loaded)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from embedkeeper.store.source.preflight import HEAD_REVISION
from tests.cli.conftest import Cli
from tests.cli.helpers import assert_one_error_line, count_rows, scalar
from tests.conftest import Server, insert_docs


def assert_nothing_written(conn: psycopg.Connection[Any]) -> None:
    assert count_rows(conn, "embeddings") == 0
    assert count_rows(conn, "runs") == 0
    assert count_rows(conn, "models") == 0


def test_missing_table_exits_1_asking_to_set_source_table(cli, conn):
    insert_docs(conn, ["one", "two"])
    cli.configure(source={"table": "public.nope"})

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert line == (
        "embedkeeper: error: table public.nope does not exist (or is not visible to this role); "
        "set [source] table, e.g. table = 'public.documents'"
    )
    assert "model_loaded" not in result.stderr
    assert_nothing_written(conn)


def test_missing_column_exits_1_listing_the_columns(cli, conn):
    insert_docs(conn, ["one", "two"])
    cli.configure(source={"text_column": "nobody"})

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert line == (
        'embedkeeper: error: table public.docs has no column "nobody"; set [source] text_column '
        "(columns: id, body, updated_at)"
    )
    assert_nothing_written(conn)


def test_numeric_key_exits_1_naming_the_supported_key_types(cli, conn):
    conn.execute("CREATE TABLE public.numkeys (id numeric PRIMARY KEY, body text)")
    conn.execute("INSERT INTO public.numkeys VALUES (1, 'one'), (2.5, 'two and a half')")
    cli.configure(source={"table": "public.numkeys", "updated_at_column": None})

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert 'key column "id" of public.numkeys is numeric' in line
    assert "integer, bigint, text or uuid" in line
    assert "set [source] id_column" in line
    assert_nothing_written(conn)


def test_mixed_case_column_unquoted_exits_1_suggesting_quotes(cli, conn):
    conn.execute('CREATE TABLE public.mixed (id bigint PRIMARY KEY, "Body" text)')
    conn.execute("""INSERT INTO public.mixed VALUES (1, 'one'), (2, 'two'), (3, NULL)""")
    cli.configure(
        source={"table": "public.mixed", "text_column": "Body", "updated_at_column": None}
    )

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert line == (
        'embedkeeper: error: table public.mixed has no column "body"; set [source] text_column '
        """(columns: id, "Body"); mixed-case names need quotes, e.g. '"Body"'"""
    )
    assert_nothing_written(conn)


def test_mixed_case_column_quoted_works_for_coverage(cli, conn):
    conn.execute('CREATE TABLE public.mixed (id bigint PRIMARY KEY, "Body" text)')
    conn.execute("""INSERT INTO public.mixed VALUES (1, 'one'), (2, 'two'), (3, NULL)""")
    cli.configure(
        source={"table": "public.mixed", "text_column": '"Body"', "updated_at_column": None}
    )

    result = cli("coverage", "--json")

    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["total"], row["pending"], row["skipped"], row["embedded"]) == (3, 2, 1, 0)
    assert_nothing_written(conn)


def test_unmigrated_database_exits_1_asking_for_migrate(tmp_path, bare_url):
    cli = Cli(tmp_path, bare_url)

    result = cli("coverage")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert line == (
        f"embedkeeper: error: embedkeeper's schema is missing, this version needs {HEAD_REVISION}; "
        "run `embedkeeper migrate`"
    )


def test_migrate_then_coverage_works_on_a_bare_database(tmp_path, bare_url):
    with psycopg.connect(bare_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO public.docs (id, body) VALUES (1, 'one'), (2, ' ')")
    cli = Cli(tmp_path, bare_url)

    migrated = cli("migrate")
    again = cli("migrate")
    coverage = cli("coverage", "--json")

    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith(
        f"embedkeeper schema at revision {HEAD_REVISION} in postgresql://"
    )
    assert f"schema_migrated revision={HEAD_REVISION}" in migrated.stderr
    assert again.returncode == 0, again.stderr
    assert f"schema_current revision={HEAD_REVISION}" in again.stderr
    assert coverage.returncode == 0, coverage.stderr
    assert json.loads(coverage.stdout) == [
        {
            "model": "minilm",
            "total": 2,
            "embedded": 0,
            "stale": 0,
            "pending": 1,
            "failed": 0,
            "ignored": 0,
            "skipped": 1,
            "source": "docs",
            "chunks": 0,
            "truncated": 0,
            "coverage_percent": 0.0,
        }
    ]
    with psycopg.connect(bare_url) as conn:
        assert scalar(conn, "SELECT version_num FROM embedkeeper.alembic_version") == HEAD_REVISION
        id_type = scalar(
            conn,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'embedkeeper.embeddings'::regclass AND attname = 'document_id'",
        )
        assert id_type == "bigint"


@pytest.fixture
def no_pgvector_url(pg: Server) -> Iterator[str]:
    """A database made from template0: no pgvector extension, no embedkeeper schema."""
    name = f"nopgvector_{id(pg)}"
    with pg.admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    url = pg.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.docs (id bigint PRIMARY KEY, body text,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO public.docs (id, body) VALUES (1, 'one'), (2, 'two')")
    yield url
    pg.drop_database(name)


def test_missing_pgvector_exits_1_asking_for_migrate(tmp_path, no_pgvector_url):
    cli = Cli(tmp_path, no_pgvector_url)

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert "pgvector extension is not installed" in line
    assert "run `embedkeeper migrate`" in line
    assert "model_loaded" not in result.stderr
    with psycopg.connect(no_pgvector_url) as conn:
        assert scalar(conn, "SELECT to_regnamespace('embedkeeper')") is None


def test_migrate_installs_pgvector_where_the_server_has_it(tmp_path, no_pgvector_url):
    cli = Cli(tmp_path, no_pgvector_url)

    migrated = cli("migrate")
    coverage = cli("coverage", "--json")

    assert migrated.returncode == 0, migrated.stderr
    assert coverage.returncode == 0, coverage.stderr
    assert json.loads(coverage.stdout)[0]["pending"] == 2


def test_registry_with_other_dimensions_exits_1_without_loading_the_model(cli, conn):
    insert_docs(conn, ["one"])
    conn.execute(
        "INSERT INTO embedkeeper.models (name, dimensions, backend, model_ref)"
        " VALUES ('minilm', 768, 'sentence-transformers', 'some-768-model')"
    )

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert line.startswith(
        'embedkeeper: error: model name "minilm" already holds 768-d vectors but its model makes'
        " 384; give [[models]] a new name"
    )
    assert "model_loaded" not in result.stderr
    assert count_rows(conn, "embeddings") == 0
    assert count_rows(conn, "runs") == 0
