"""`embedkeeper search` through the installed command: the question embedded with the model's
query_prefix, one row per document nearest first, `--json` fields (the score and the ranking it
comes from), usage errors, a pair with nothing embedded, and the model `--source` picks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import insert_docs, vectors

TEXTS = [
    "PostgreSQL keeps table rows in heap pages of eight kilobytes.",
    "Bread rises because yeast ferments the sugars in the dough.",
    "A comet's tail always points away from the sun.",
]


def test_search_prints_the_nearest_documents_as_json_and_as_a_table(cli, conn, minilm):
    ids = insert_docs(conn, TEXTS)
    # by vector alone: the source's full_text (on by default) turned off
    cli.configure(model={"query_prefix": "question: "}, source={"full_text": ""})
    assert cli("backfill").returncode == 0

    result = cli("search", "why does dough rise?", "-k", "2", "--json")

    assert result.returncode == 0, result.stderr
    assert 'by vector only (full_text is off for this source: full_text = "")' in result.stderr
    hits = json.loads(result.stdout)
    assert [h["document_id"] for h in hits] == [ids[1], hits[1]["document_id"]]
    assert set(hits[0]) >= {"source", "model", "document_id", "chunk", "distance", "text"}
    assert hits[0]["ranking"] == "vector"
    assert hits[0]["score"] == pytest.approx(1.0 - hits[0]["distance"], abs=1e-6)
    assert hits[0]["model"] == "minilm"
    assert hits[0]["source"] == "docs"
    assert hits[0]["text"] == TEXTS[1]
    # The question was embedded with the query_prefix, as a direct call of the model does.
    question = minilm.model.encode("question: why does dough rise?", normalize_embeddings=True)
    expected = 1.0 - float(np.dot(vectors(conn)[ids[1]], question))
    assert abs(hits[0]["distance"] - expected) < 1e-4

    table = cli("search", "comet tails")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["distance", "document", "chunk", "passage"]
    assert lines[1].split()[1] == str(ids[2])
    assert len(lines) == 1 + len(TEXTS)


def test_an_empty_question_or_an_unknown_model_is_one_line_and_exit_2_or_1(cli, conn):
    insert_docs(conn, TEXTS)
    empty = cli("search", "   ")
    assert empty.returncode == 2
    assert "the question is empty" in empty.stderr
    unknown = cli("search", "bread", "--model", "nope")
    assert unknown.returncode == 1
    assert 'no model named "nope"' in unknown.stderr


def test_with_full_text_search_ranks_by_words_too_and_says_which_side_found_each_row(
    cli, conn, minilm
):
    texts = [*TEXTS, "Release notes: the frobnicate_widget() helper is gone."]
    ids = insert_docs(conn, texts)
    cli.configure(source={"full_text": ""})  # off at first (it is on by default)
    assert cli("backfill").returncode == 0
    # The source now asks for full text; its pair has no column yet: an error naming migrate.
    cli.configure(source={"full_text": "english"})
    missing = cli("search", "frobnicate_widget")
    assert missing.returncode == 1
    assert "no full-text column yet" in missing.stderr
    assert "embedkeeper migrate" in missing.stderr
    once = cli("run", "--once")  # the daemon writes on without it, and says so at start
    assert once.returncode == 0, once.stderr
    assert "full_text_missing" in once.stderr
    assert "embedkeeper migrate" in once.stderr
    migrated = cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "full text (english) added" in migrated.stdout

    result = cli("search", "frobnicate_widget helper", "-k", "2", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["document_id"] == ids[3]
    assert sorted(hits[0]["found_by"]) == ["full_text", "vector"]
    assert hits[1]["found_by"] == ["vector"]
    # The rows are in the order of their fused score, which the JSON gives, and says so.
    assert [h["ranking"] for h in hits] == ["rrf", "rrf"]
    assert hits[0]["score"] == pytest.approx(2 / 61, abs=1e-6)  # rank 1 of both lists
    assert hits[0]["score"] > hits[1]["score"]

    searched = cli("search", "frobnicate_widget helper", "-k", "2")
    table = searched.stdout.splitlines()
    assert "searched docs/minilm by vector and words (full_text english)" in searched.stderr
    columns = ["score", "distance", "document", "chunk", "found", "passage"]
    assert table[0].split() == columns
    assert table[1].split()[:5] == [
        "0.0328",
        f"{hits[0]['distance']:.3f}",
        str(ids[3]),
        "0",
        "both",
    ]
    # Words that no passage holds: the same columns, every row found by the vector.
    unmatched = cli("search", "zzzqqq xxxwww", "-k", "2").stdout.splitlines()
    assert unmatched[0].split() == columns
    assert [line.split()[4] for line in unmatched[1:]] == ["vector", "vector"]
    plain = cli("search", "frobnicate_widget helper", "-k", "2", "--vector-only", "--json")
    assert [h["found_by"] for h in json.loads(plain.stdout)] == [["vector"], ["vector"]]
    assert "searched docs/minilm by vector only (--vector-only)" in plain.stderr


def test_a_pair_with_nothing_embedded_is_an_error_and_search_makes_no_table_nor_loads_a_model(
    cli, conn
):
    insert_docs(conn, TEXTS)
    # A model that cannot load: a search that loaded it would say so instead.
    cli.configure(model={"model": "/nonexistent/model"})

    result = cli("search", "why does dough rise?")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "embedkeeper: error: nothing embedded yet for docs/minilm; run `embedkeeper backfill"
        " --source docs"
        " --model minilm` (or the daemon)"
    )
    made = conn.execute("SELECT to_regclass('embedkeeper.docs__minilm_chunks')").fetchone()
    assert made == (None,)


# The first model does not embed docs: `--source docs` alone must not pick it.
NULL_FIRST = """
[[sources]]
table = "public.docs"

[[sources]]
name = "notes"
table = "public.notes"
id_column = "slug"
text_column = "content"

[[models]]
name = "null"
backend = "null"
dimensions = 384
sources = ["notes"]

[[models]]
name = "minilm"
dimensions = 384
batch_size = 16
"""


def test_source_alone_searches_with_the_first_model_that_embeds_it(cli, conn):
    ids = insert_docs(conn, TEXTS)
    conn.execute("CREATE TABLE public.notes (slug text PRIMARY KEY, content text)")
    cli.configure(NULL_FIRST)
    backfilled = cli("backfill", "--source", "docs")
    assert backfilled.returncode == 0, backfilled.stderr

    result = cli("search", "why does dough rise?", "--source", "docs", "-k", "1", "--json")

    assert result.returncode == 0, result.stderr
    [hit] = json.loads(result.stdout)
    assert (hit["source"], hit["model"], hit["document_id"]) == ("docs", "minilm", ids[1])
