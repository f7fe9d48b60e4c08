"""Several sources in one config: each (source, model) pair has its own tables, passes and
figures, and a model name shared by two tables no longer deletes the other's vectors."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import insert_docs, vectors

TWO_SOURCES = """
[[sources]]
table = "public.docs"

[[sources]]
name = "notes"
table = "public.notes"
id_column = "slug"
text_column = "content"

[[models]]
name = "minilm"
dimensions = 384
batch_size = 16

[[models]]
name = "null"
backend = "null"
dimensions = 384
sources = ["notes"]

[retry]
max_attempts = 2
"""
NOTES = {"a": "Bread rises because yeast makes gas in the dough.", "b": "Comets have tails."}


def test_two_sources_keep_their_own_vectors_figures_and_search(cli, conn, minilm):
    conn.execute("CREATE TABLE public.notes (slug text PRIMARY KEY, content text)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO public.notes VALUES (%s, %s)", list(NOTES.items()))
    insert_docs(conn, ["the first document", "the second document", "the third"])
    cli.configure(TWO_SOURCES)

    assert cli("migrate").returncode == 0
    first = cli("backfill")
    again = cli("backfill")

    assert first.returncode == 0, first.stderr
    assert sorted(vectors(conn, "minilm", "docs")) == [1, 2, 3]
    notes = vectors(conn, "minilm", "notes")
    assert sorted(notes) == ["a", "b"]
    direct = minilm.model.encode(NOTES["a"], normalize_embeddings=True)
    assert float(np.dot(notes["a"], direct)) >= 0.9999
    assert sorted(vectors(conn, "null", "notes")) == ["a", "b"]
    assert vectors(conn, "null", "docs") == {}  # `sources` leaves docs out: no pair, no tables
    # The bug this layout ends: a second backfill of one table deleted the other's vectors.
    assert again.returncode == 0, again.stderr
    assert sorted(vectors(conn, "minilm", "docs")) == [1, 2, 3]
    assert sorted(vectors(conn, "minilm", "notes")) == ["a", "b"]
    runs = conn.execute(
        "SELECT source, model, sum(docs_ok) FROM embedkeeper.runs GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    assert runs == [("docs", "minilm", 3), ("notes", "minilm", 2), ("notes", "null", 2)]

    coverage = json.loads(cli("coverage", "--json").stdout)
    assert [(c["source"], c["model"], c["embedded"]) for c in coverage] == [
        ("docs", "minilm", 3),
        ("notes", "minilm", 2),
        ("notes", "null", 2),
    ]
    table = cli("coverage").stdout.splitlines()
    assert table[0].split() == [
        "source",
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
    rows = {tuple(line.split()[:2]): line.split() for line in table[1:]}
    assert rows[("notes", "minilm")][9:] == ["2", "0", "100.00%"]  # one chunk each, none cut
    only_notes = json.loads(cli("coverage", "--json", "--source", "notes").stdout)
    assert {c["source"] for c in only_notes} == {"notes"}

    search = cli("search", "why does dough rise?", "--source", "notes", "-k", "1", "--json")
    assert search.returncode == 0, search.stderr
    [hit] = json.loads(search.stdout)
    assert (hit["source"], hit["document_id"]) == ("notes", "a")

    refused = cli("backfill", "--source", "docs", "--model", "null")
    assert refused.returncode == 1
    assert 'model "null" does not embed source "docs"' in refused.stderr
