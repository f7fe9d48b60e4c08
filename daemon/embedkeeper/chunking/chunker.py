"""A Chunker: one document's text in, its chunks (with their character offsets) out.

The same settings always cut a text the same way, and `fingerprint` names them: it is stored
with each document's record, so changing the chunking makes every document stale. A text longer
than SEGMENT_CHARS is split a segment at a time (cut at a paragraph, line or word break), so the
splitter never holds more than one segment: a 50 MB text is chunked in bounded memory. The
segments' chunks simply follow each other (no overlap across a segment's end). `max_chunks`
caps the work one document may cost; a document cut there is reported as `capped`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from embedkeeper.chunking.tokenizer import Window

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Chunking = Literal["text", "markdown", "none"]
CHUNKINGS: tuple[Chunking, ...] = ("text", "markdown", "none")
SEGMENT_CHARS = 1_000_000
# With no tokenizer (a server that does not say what it counts), a chunk gets this many
# characters per token of its budget: BERT and BPE vocabularies average about 4 characters per
# token on English prose, so 3 leaves a margin of a quarter. Denser text (code, CJK) may still
# exceed the window; the server then cuts it.
CHARS_PER_TOKEN = 3


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int  # 0, 1, 2 ... in the order of the text
    start: int  # character offsets into the document's text: text[start:end] == self.text
    end: int
    text: str


class _Splitter(Protocol):
    def chunk_indices(self, text: str) -> list[tuple[int, str]]: ...


class Chunker:
    def __init__(
        self, method: Chunking, splitter: _Splitter | None, fingerprint: str, max_chunks: int
    ) -> None:
        self.method = method
        self._splitter = splitter
        self.fingerprint = fingerprint
        self.max_chunks = max_chunks

    def split(self, text: str) -> tuple[list[Chunk], bool]:
        """The text's chunks in order, and whether max_chunks cut some text off."""
        chunks: list[Chunk] = []
        for chunk in self._chunks(text):
            if len(chunks) == self.max_chunks:
                return chunks, True
            chunks.append(chunk)
        return chunks, False

    def _chunks(self, text: str) -> Iterator[Chunk]:
        if self._splitter is None:  # "none": the whole text, which the model cuts at its window
            if text.strip():
                yield Chunk(0, 0, len(text), text)
            return
        seq = 0
        for offset, segment in _segments(text, SEGMENT_CHARS):
            for start, passage in self._splitter.chunk_indices(segment):
                yield Chunk(seq, offset + start, offset + start + len(passage), passage)
                seq += 1


def make_chunker(
    method: Chunking,
    *,
    window: Window | None,
    tokenizer: Tokenizer | None,
    overlap: int = 32,
    max_chunks: int = 1024,
) -> Chunker:
    """A chunker for `method`: by the tokenizer's tokens when there is one, else by characters
    (CHARS_PER_TOKEN per token). `window` None (a model whose window is unknown) only with
    "none"."""
    if method == "none" or window is None:
        return Chunker("none", None, "none", max_chunks=1)
    import semantic_text_splitter as sts

    capacity = window.capacity
    overlap = max(0, min(overlap, capacity // 2))
    splitter_class = sts.MarkdownSplitter if method == "markdown" else sts.TextSplitter
    splitter: _Splitter
    if tokenizer is not None:
        splitter = splitter_class.from_huggingface_tokenizer(tokenizer, capacity, overlap=overlap)
        unit = "tokens"
    else:
        splitter = splitter_class(capacity * CHARS_PER_TOKEN, overlap=overlap * CHARS_PER_TOKEN)
        unit = "chars"
    fingerprint = f"{method}:{capacity}:{overlap}:{max_chunks}:{unit}"
    return Chunker(method, splitter, fingerprint, max_chunks)


def _segments(text: str, size: int) -> Iterator[tuple[int, str]]:
    """The text in pieces of at most `size` characters, each cut at the last paragraph break in
    its final tenth, else the last line break, else the last space, else at `size`."""
    start = 0
    while len(text) - start > size:
        end = start + size
        floor = end - size // 10
        for mark in ("\n\n", "\n", " "):
            cut = text.rfind(mark, floor, end)
            if cut > start:
                end = cut + len(mark)
                break
        yield start, text[start:end]
        start = end
    if start < len(text):
        yield start, text[start:]
