"""`embedkeeper search` through the installed command: the question embedded with the model's
query_prefix, one row per document nearest first, `--json` fields, and usage errors."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import insert_docs, vectors

TEXTS = [
    "PostgreSQL keeps table rows in heap pages of eight kilobytes.",
    "Bread rises because yeast ferments the sugars in the dough.",
    "A comet's tail always points away from the sun.",
]


def test_search_prints_the_nearest_documents_as_json_and_as_a_table(cli, conn, minilm):
    ids = insert_docs(conn, TEXTS)
    cli.configure(model={"query_prefix": "question: "})
    assert cli("backfill").returncode == 0

    result = cli("search", "why does dough rise?", "-k", "2", "--json")

    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert [h["document_id"] for h in hits] == [ids[1], hits[1]["document_id"]]
    assert set(hits[0]) >= {"source", "model", "document_id", "chunk", "distance", "text"}
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

    table = cli("search", "frobnicate_widget helper", "-k", "2").stdout.splitlines()
    assert table[0].split() == ["distance", "document", "chunk", "found", "passage"]
    assert table[1].split()[1:4] == [str(ids[3]), "0", "both"]
    # Words that no passage holds: the same columns, every row found by the vector.
    unmatched = cli("search", "comet tails zzzqqq", "-k", "2").stdout.splitlines()
    assert unmatched[0].split() == ["distance", "document", "chunk", "found", "passage"]
    assert [line.split()[3] for line in unmatched[1:]] == ["vector", "vector"]
    plain = cli("search", "frobnicate_widget helper", "-k", "2", "--vector-only", "--json")
    assert [h["found_by"] for h in json.loads(plain.stdout)] == [["vector"], ["vector"]]
