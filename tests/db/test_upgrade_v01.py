"""Upgrading a v0.1 database: `embedkeeper migrate` carries every row the release wrote
(tests/data/v0_1.sql, made by the release itself) into the (source, model) pairs' tables,
embeds nothing again, and a second run carries nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.cli.helpers import cli_env, error_lines, run_cli, scalar, write_config

FIXTURE = Path(__file__).parents[1] / "data" / "v0_1.sql"
MINILM = {"name": "minilm", "dimensions": 384}  # chunking: the default, "text"
NULLM = {"name": "nullm", "backend": "null", "dimensions": 8, "chunking": "none"}
CARRIED_COLUMNS = sql.SQL(
    "embedding::text, content_hash, token_count, truncated, source_updated_at, embedded_at"
)
FAILURE_COLUMNS = sql.SQL(
    "document_id, attempts, status, error_class, message, content_hash, first_seen, last_seen,"
    " next_retry_at"
)


def report_lines(stdout: str) -> list[str]:
    """migrate's output less the lines that name each pair's tables (they follow the report)."""
    return [line for line in stdout.splitlines() if not line.startswith("source ")]


def psql() -> Path:
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"


@pytest.fixture
def v01_url(bare_url: str) -> str:
    """A fresh database holding what the v0.1 release left (pgvector comes with bare_url)."""
    subprocess.run(
        [str(psql()), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", bare_url, "-f", str(FIXTURE)],
        check=True,
        capture_output=True,
        text=True,
    )
    return bare_url


def migrate(tmp_path: Path, url: str, *models: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, models=list(models))
    result = run_cli(["migrate", "--config", str(config)], cli_env(tmp_path, url))
    assert result.returncode == 0, result.stderr
    return result


def v01_vectors(conn: psycopg.Connection[Any], model: str) -> dict[int, tuple[Any, ...]]:
    rows = conn.execute(
        sql.SQL("SELECT document_id, {} FROM embedkeeper.embeddings WHERE model = %s").format(
            CARRIED_COLUMNS
        ),
        (model,),
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def pair_vectors(conn: psycopg.Connection[Any], base: str) -> dict[int, tuple[Any, ...]]:
    """The pair's records with their one chunk: the carried columns, then what the pair adds."""
    rows = conn.execute(
        sql.SQL(
            "SELECT d.document_id, c.embedding::text, d.content_hash, d.token_count, d.truncated,"
            " d.source_updated_at, d.embedded_at, d.chunking, d.chunk_count, c.chunk,"
            " c.char_start, c.char_end, c.passage"
            " FROM {} AS d FULL JOIN {} AS c USING (document_id)"
        ).format(
            sql.Identifier("embedkeeper", f"{base}_documents"),
            sql.Identifier("embedkeeper", f"{base}_chunks"),
        )
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def failures_of(conn: psycopg.Connection[Any], table: str, model: str | None = None) -> list[Any]:
    """A failures table's rows; `model`: the shared table's rows of that model."""
    where = sql.SQL("model = {}").format(model) if model else sql.SQL("TRUE")
    return conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY document_id").format(
            FAILURE_COLUMNS, sql.Identifier("embedkeeper", table), where
        )
    ).fetchall()


def bodies(conn: psycopg.Connection[Any]) -> dict[int, str]:
    return dict(conn.execute("SELECT id, body FROM public.docs").fetchall())


def test_migrate_carries_every_v01_row_into_the_pairs_tables(tmp_path, v01_url):
    with psycopg.connect(v01_url) as conn:
        minilm_before = v01_vectors(conn, "minilm")
        nullm_before = v01_vectors(conn, "nullm")
        failures_before = failures_of(conn, "failures", "minilm")
        runs_before = conn.execute("SELECT id, model FROM embedkeeper.runs").fetchall()
        texts = bodies(conn)
    # What the release wrote, so that nothing below can pass on an empty fixture.
    assert (len(minilm_before), len(nullm_before)) == (30, 30)
    assert [(f[0], f[1], f[2]) for f in failures_before] == [(101, 2, "review"), (102, 1, "review")]
    assert len(runs_before) == 4

    result = migrate(tmp_path, v01_url, MINILM, NULLM)

    lines = report_lines(result.stdout)
    assert lines[1:] == [
        'v0.1 rows carried into the pairs of source "docs":',
        "  minilm: 30 vectors, 2 failures"
        " -> embedkeeper.docs__minilm_documents, _chunks, _failures",
        "  minilm: index docs__minilm_hnsw built by migrate (was embeddings_minilm_hnsw)",
        '  minilm: chunking = "text", so 30 documents will be embedded again (old vectors serve'
        " meanwhile)",
        '  minilm: to keep the old vectors instead, set chunking = "none" in its [[models]]',
        "  nullm: 30 vectors, 0 failures -> embedkeeper.docs__nullm_documents, _chunks, _failures",
        "  nullm: index docs__nullm_hnsw recorded as deferred (was embeddings_nullm_hnsw)",
        "  nullm: the next rebuild of deferred indexes builds it (embedkeeper index restore)",
        "  nullm: nothing will be embedded again",
    ]
    assert (
        "v01_carried source=docs model=minilm vectors=30 failures=2 index=built reembed=30"
        in result.stderr
    )
    with psycopg.connect(v01_url) as conn:
        # minilm's config chunks: its records are carried stale ("none"); nullm's keeps texts
        # whole: they are carried current, under its settings (the fingerprint's base "none").
        nullm_print = scalar(conn, "SELECT chunking FROM embedkeeper.pairs WHERE model = 'nullm'")
        assert nullm_print.partition(";v=")[0] == "none"
        carried_as = {"docs__minilm": "none", "docs__nullm": nullm_print}
        for base, before in (("docs__minilm", minilm_before), ("docs__nullm", nullm_before)):
            expected = {
                doc: (*carried, carried_as[base], 1, 0, 0, len(texts[doc]), texts[doc])
                for doc, carried in before.items()
            }
            assert pair_vectors(conn, base) == expected
        assert failures_of(conn, "docs__minilm_failures") == failures_before
        assert failures_of(conn, "docs__nullm_failures") == []
        assert conn.execute(
            "SELECT source, model, base_name, source_table, key_type, dimensions, storage"
            " FROM embedkeeper.pairs ORDER BY model"
        ).fetchall() == [
            ("docs", "minilm", "docs__minilm", "public.docs", "bigint", 384, "vector"),
            ("docs", "nullm", "docs__nullm", "public.docs", "bigint", 8, "vector"),
        ]
        assert sorted(conn.execute("SELECT id, model, source FROM embedkeeper.runs")) == [
            (run, model, "docs") for run, model in sorted(runs_before)
        ]
        assert sorted(conn.execute("SELECT source, model FROM embedkeeper.sync_state")) == [
            ("docs", "minilm"),
            ("docs", "nullm"),
        ]
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.embeddings") == 0
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.failures") == 0


def test_the_live_v01_index_is_rebuilt_on_the_pairs_chunks_and_used(tmp_path, v01_url):
    migrate(tmp_path, v01_url, MINILM, NULLM)

    with psycopg.connect(v01_url) as conn:
        indexes = conn.execute(
            "SELECT c.relname, i.indrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
            " FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
            " JOIN pg_am AS a ON a.oid = c.relam WHERE a.amname = 'hnsw'"
        ).fetchall()
        assert indexes == [
            (
                "docs__minilm_hnsw",
                "embedkeeper.docs__minilm_chunks",
                "CREATE INDEX docs__minilm_hnsw ON embedkeeper.docs__minilm_chunks USING hnsw"
                " (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')",
            )
        ]
        query = scalar(conn, "SELECT embedding::text FROM embedkeeper.docs__minilm_chunks LIMIT 1")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                sql.SQL(
                    "EXPLAIN SELECT document_id FROM embedkeeper.docs__minilm_chunks"
                    " ORDER BY embedding <=> {}::vector LIMIT 5"
                ).format(query)
            )
        )
        assert "Index Scan using docs__minilm_hnsw" in plan, plan


def test_a_deferred_v01_index_is_recorded_as_the_pairs_index(tmp_path, v01_url):
    migrate(tmp_path, v01_url, MINILM, NULLM)

    with psycopg.connect(v01_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT index_name, source, model, definition FROM embedkeeper.deferred_indexes"
        ).fetchall()
        definition = (
            "CREATE INDEX docs__nullm_hnsw ON embedkeeper.docs__nullm_chunks USING hnsw"
            " (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')"
        )
        assert rows == [("docs__nullm_hnsw", "docs", "nullm", definition)]
        # The record is what PostgreSQL itself writes for the index a rebuild makes of it.
        conn.execute(definition)
        rebuilt = scalar(
            conn, "SELECT pg_get_indexdef(to_regclass('embedkeeper.docs__nullm_hnsw'))"
        )
        assert rebuilt == definition


def test_a_second_migrate_carries_nothing_and_says_so(tmp_path, v01_url):
    migrate(tmp_path, v01_url, MINILM, NULLM)
    with psycopg.connect(v01_url) as conn:
        after_first = {base: pair_vectors(conn, base) for base in ("docs__minilm", "docs__nullm")}
        failures = failures_of(conn, "docs__minilm_failures")

    again = migrate(tmp_path, v01_url, MINILM, NULLM)

    assert report_lines(again.stdout)[1:] == []  # a new or carried database: no v0.1 lines
    assert "v01_nothing_to_carry source=docs" in again.stderr
    with psycopg.connect(v01_url) as conn:
        assert {base: pair_vectors(conn, base) for base in after_first} == after_first
        assert failures_of(conn, "docs__minilm_failures") == failures
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.deferred_indexes") == 1


def test_a_model_kept_whole_is_carried_under_its_window_and_nothing_is_embedded_again(
    tmp_path, v01_url
):
    """chunking = "none" with max_tokens: the fingerprint names the window the model cuts at,
    and the carried vectors were cut at the config's window, so they are recorded with it and
    stay current (the whole v0.1 database is not embedded again for nothing)."""
    whole = {**MINILM, "chunking": "none", "max_tokens": 128}
    migrate(tmp_path, v01_url, whole, NULLM)

    with psycopg.connect(v01_url) as conn:
        chunkings = conn.execute(
            "SELECT DISTINCT chunking FROM embedkeeper.docs__minilm_documents"
        ).fetchall()
        pairs = conn.execute("SELECT model, chunking FROM embedkeeper.pairs ORDER BY model")
        recorded = {model: chunking for model, chunking in pairs}
        assert chunkings == [(recorded["minilm"],)]
        # The fingerprints name the window, then the vectors' settings (";v=").
        assert {m: c.partition(";v=")[0] for m, c in recorded.items()} == {
            "minilm": "none:128",
            "nullm": "none",
        }
    config = write_config(tmp_path, models=[whole, NULLM])
    result = run_cli(["coverage", "--json", "--config", str(config)], cli_env(tmp_path, v01_url))
    assert result.returncode == 0, result.stderr
    minilm = next(c for c in json.loads(result.stdout) if c["model"] == "minilm")
    assert (minilm["embedded"], minilm["stale"]) == (30, 0)


def test_a_model_missing_from_the_config_stays_in_the_shared_table_until_named(tmp_path, v01_url):
    with psycopg.connect(v01_url) as conn:
        nullm_before = v01_vectors(conn, "nullm")

    first = migrate(tmp_path, v01_url, MINILM)

    assert report_lines(first.stdout)[-2:] == [
        'warning: model "nullm" has 30 vectors in embedkeeper.embeddings but no [[models]]'
        " entry: left there",
        '  (add "nullm" to [[models]] and migrate again to carry them)',
    ]
    assert "v01_model_left model=nullm vectors=30" in first.stderr
    with psycopg.connect(v01_url) as conn:
        assert v01_vectors(conn, "nullm") == nullm_before
        assert v01_vectors(conn, "minilm") == {}
        assert scalar(conn, "SELECT to_regclass('embedkeeper.docs__nullm_chunks')") is None
        assert conn.execute(
            "SELECT index_name, source FROM embedkeeper.deferred_indexes"
        ).fetchall() == [("embeddings_nullm_hnsw", "")]
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.runs WHERE source = ''") == 1

    second = migrate(tmp_path, v01_url, MINILM, NULLM)

    assert "  nullm: 30 vectors, 0 failures" in second.stdout
    assert "  minilm:" not in "\n".join(report_lines(second.stdout))
    with psycopg.connect(v01_url) as conn:
        assert len(pair_vectors(conn, "docs__nullm")) == 30
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.embeddings") == 0
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.runs WHERE source = ''") == 0


def test_a_named_source_and_halfvec_storage_get_their_pairs_tables(tmp_path, v01_url):
    with psycopg.connect(v01_url) as conn:
        as_halfvec: dict[int, str] = dict(
            conn.execute(
                "SELECT document_id, embedding::halfvec(384)::text FROM embedkeeper.embeddings"
                " WHERE model = 'minilm'"
            ).fetchall()
        )
    config = write_config(
        tmp_path, source={"name": "library"}, models=[{**MINILM, "storage": "halfvec"}, NULLM]
    )

    result = run_cli(["migrate", "--config", str(config)], cli_env(tmp_path, v01_url))

    assert result.returncode == 0, result.stderr
    assert 'v0.1 rows carried into the pairs of source "library":' in result.stdout
    with psycopg.connect(v01_url) as conn:
        chunks: dict[int, str] = dict(
            conn.execute(
                "SELECT document_id, embedding::text FROM embedkeeper.library__minilm_chunks"
            ).fetchall()
        )
        assert len(as_halfvec) == 30
        assert chunks == as_halfvec
        assert scalar(
            conn,
            "SELECT pg_get_indexdef(to_regclass('embedkeeper.library__minilm_hnsw'))",
        ) == (
            "CREATE INDEX library__minilm_hnsw ON embedkeeper.library__minilm_chunks USING hnsw"
            " (embedding halfvec_cosine_ops) WITH (m='16', ef_construction='64')"
        )
        assert scalar(conn, "SELECT storage FROM embedkeeper.pairs WHERE model = 'minilm'") == (
            "halfvec"
        )
        assert sorted(conn.execute("SELECT DISTINCT source FROM embedkeeper.runs")) == [
            ("library",)
        ]


def test_a_config_of_another_size_is_refused_and_moves_nothing(tmp_path, v01_url):
    with psycopg.connect(v01_url) as conn:
        minilm_before = v01_vectors(conn, "minilm")
    config = write_config(tmp_path, models=[{**MINILM, "dimensions": 768}])

    result = run_cli(["migrate", "--config", str(config)], cli_env(tmp_path, v01_url))

    assert result.returncode == 1, result.stdout
    assert error_lines(result.stderr) == [
        'embedkeeper: error: [[models]] "minilm" says dimensions = 768, but its v0.1 vectors'
        " have 384; give the model another name to embed again beside them, or set"
        " dimensions = 384"
    ]
    with psycopg.connect(v01_url) as conn:
        assert v01_vectors(conn, "minilm") == minilm_before
        assert scalar(conn, "SELECT to_regclass('embedkeeper.docs__minilm_chunks')") is None
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.pairs") == 0
        assert scalar(conn, "SELECT count(*) FROM embedkeeper.failures") == 2
        assert scalar(conn, "SELECT to_regclass('embedkeeper.embeddings_minilm_hnsw') IS NOT NULL")


@pytest.mark.parametrize(
    ("old_index", "carried"),
    [
        (
            "USING hnsw ((embedding::vector(384)) vector_l2_ops)"
            " WITH (m = 8, ef_construction = 40)",
            "(embedding vector_l2_ops) WITH (m='8', ef_construction='40')",
        ),
        (
            "USING ivfflat ((embedding::vector(384)) vector_ip_ops) WITH (lists = 4)",
            "(embedding vector_ip_ops) WITH (m='16', ef_construction='64')",
        ),
    ],
)
def test_the_old_index_operator_class_and_parameters_come_along(
    tmp_path, v01_url, old_index, carried
):
    with psycopg.connect(v01_url, autocommit=True) as conn:
        conn.execute("DROP INDEX embedkeeper.embeddings_minilm_hnsw")
        conn.execute(
            sql.SQL("CREATE INDEX mine ON embedkeeper.embeddings {} WHERE model = 'minilm'").format(
                sql.SQL(old_index)
            )
        )

    result = migrate(tmp_path, v01_url, MINILM, NULLM)

    assert "  minilm: index docs__minilm_hnsw built by migrate (was mine)" in result.stdout
    with psycopg.connect(v01_url) as conn:
        assert scalar(conn, "SELECT to_regclass('embedkeeper.mine')") is None
        assert scalar(
            conn, "SELECT pg_get_indexdef(to_regclass('embedkeeper.docs__minilm_hnsw'))"
        ) == (
            "CREATE INDEX docs__minilm_hnsw ON embedkeeper.docs__minilm_chunks USING hnsw "
            + carried
        )
