"""`embedkeeper index` through the installed command: output, and exit codes for bad input."""

from __future__ import annotations

from tests.cli.helpers import assert_one_error_line


def test_index_create_status_drop(cli, conn):
    created = cli("index", "create", "--model", "minilm", "--maintenance-work-mem", "64MB")
    assert created.returncode == 0, created.stderr
    assert created.stdout == "created embedkeeper.docs__minilm_hnsw\n"

    status = cli("index", "status")
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()
    assert header.split()[:4] == ["model", "index", "state", "size"]
    assert row.split()[:3] == ["minilm", "docs__minilm_hnsw", "live"]
    assert "ON embedkeeper.docs__minilm_chunks USING hnsw (embedding vector_cosine_ops)" in row

    dropped = cli("index", "drop", "--model", "minilm")
    assert dropped.stdout == "dropped docs__minilm_hnsw\n"
    assert conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%hnsw'"
    ).fetchone() == (0,)


def test_an_unknown_model_exits_1_naming_the_models(cli):
    result = cli("index", "create", "--model", "nope")
    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert (
        line == 'embedkeeper: error: config: no model named "nope" in [[models]] (models: minilm)'
    )


def test_a_wrong_opclass_or_hnsw_parameter_exits_2(cli):
    opclass = cli("index", "create", "--model", "minilm", "--opclass", "dot")
    assert opclass.returncode == 2
    assert "argument --opclass: invalid choice: 'dot'" in opclass.stderr

    ef = cli("index", "create", "--model", "minilm", "--m", "32", "--ef-construction", "40")
    line = assert_one_error_line(ef, 2, "embedkeeper: error:")
    assert line == (
        "embedkeeper: error: --ef-construction 40 is out of range; "
        "pgvector takes 2 * m (64) to 1000"
    )


def test_backfill_defer_index_ends_with_the_index_valid(cli, conn):
    conn.execute("INSERT INTO docs (id, body) SELECT g, 'doc ' || g FROM generate_series(1, 50) g")
    cli.configure(models=[{"name": "null", "backend": "null", "dimensions": 384}])
    assert cli("index", "create", "--model", "null").returncode == 0

    result = cli("backfill", "--defer-index")

    assert result.returncode == 0, result.stderr
    assert "index_deferred model=null indexes=docs__null_hnsw" in result.stderr
    assert "index_rebuilt model=null indexes=docs__null_hnsw" in result.stderr
    assert conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'embedkeeper.docs__null_hnsw'::regclass"
    ).fetchone() == (True,)
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__null_documents").fetchone() == (50,)
