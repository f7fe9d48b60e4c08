"""A Chunker: one document's text in, its chunks (with their character offsets) out.

The same settings always cut a text the same way, and `fingerprint` names them: it is stored
with each document's record, so changing the chunking makes every document stale. A text longer
than SEGMENT_CHARS is split a segment at a time (cut at a paragraph, line or word break), so the
splitter never holds more than one segment: a 50 MB text is chunked in bounded memory. The
segments' chunks simply follow each other (no overlap across a segment's end). `max_chunks`
caps the work one document may cost; a document cut there is reported as `capped`.

Most short documents fit one chunk whole, and the splitter costs about 0.3 ms a text even then
(it measures every semantic level of the text): `split_many` counts a batch's short texts with
the tokenizer at once (`encode_batch_fast`, parallel in Rust) and gives each that fits its one
chunk directly, the very chunk the splitter would return (trimmed as it trims; the unit tests
compare the two).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
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
# Texts of more characters than this per unit of a chunk's capacity (a token; a character
# without a tokenizer) are not trimmed or counted for the fast path: they almost never fit (a
# token of prose is about 4 characters), so counting them would only add to the splitter's
# work, and a huge text is never copied. One that would fit still gets its chunk, from the
# splitter.
WHOLE_CHARS_PER_TOKEN = 10
# What the splitter trims from a chunk: Rust's `char::is_whitespace`, the Unicode White_Space
# property. Python's str.strip() would also trim the separators U+001C to U+001F.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int  # 0, 1, 2 ... in the order of the text
    start: int  # character offsets into the document's text: text[start:end] == self.text
    end: int
    text: str
    # Tokens of `text` alone (no special tokens), as the chunker's tokenizer counted them; None
    # without a tokenizer. Carried to the backend, so no chunk is tokenized a second time.
    tokens: int | None = None


class _Splitter(Protocol):
    def chunk_indices(self, text: str) -> list[tuple[int, str]]: ...


@dataclass(frozen=True, slots=True)
class WholeFit:
    """Which texts the splitter would return whole, as one chunk: those whose trimmed text
    holds at most `capacity` tokens of `tokenizer` (counted without special tokens, as the
    splitter counts), or `capacity` characters without a tokenizer."""

    capacity: int
    tokenizer: Tokenizer | None
    keep_indent: bool  # the markdown splitter keeps a multi-line chunk's indentation

    def chunks(self, texts: Sequence[str]) -> list[list[Chunk] | None]:
        """Each text's chunks where it fits whole ([] for a blank text), else None."""
        most_chars = self.capacity * WHOLE_CHARS_PER_TOKEN
        short = [i for i, text in enumerate(texts) if len(text) <= most_chars]
        trimmed = {i: _trim(texts[i], self.keep_indent) for i in short}
        counts: dict[int, int | None]
        if self.tokenizer is None:
            counts = {i: None for i in trimmed}
            fits = {i: len(body) <= self.capacity for i, (_, body) in trimmed.items()}
        else:
            bodies = [body for _, body in trimmed.values()]
            encodings = self.tokenizer.encode_batch_fast(bodies, add_special_tokens=False)
            tokens = {i: len(e) for i, e in zip(trimmed, encodings, strict=True)}
            fits = {i: n <= self.capacity for i, n in tokens.items()}
            counts = dict(tokens)
        result: list[list[Chunk] | None] = [None] * len(texts)
        for i, (start, body) in trimmed.items():
            if not body:
                result[i] = []
            elif fits[i]:
                result[i] = [Chunk(0, start, start + len(body), body, counts[i])]
        return result


def _trim(text: str, keep_indent: bool) -> tuple[int, str]:
    """Where the chunk the splitter makes of the whole text starts, and its text: trimmed of
    white space at both ends, or for markdown, where it spans lines, of leading line breaks
    only (semantic-text-splitter's `Trim::PreserveIndentation`)."""
    body = text.strip(WHITESPACE)
    if keep_indent and ("\n" in body or "\r" in body):
        head = text.lstrip("\r\n")
        return len(text) - len(head), head.rstrip(WHITESPACE)
    return len(text) - len(text.lstrip(WHITESPACE)), body


class Chunker:
    def __init__(
        self,
        method: Chunking,
        splitter: _Splitter | None,
        fingerprint: str,
        max_chunks: int,
        whole: WholeFit | None = None,
        chunk_chars: int = 0,
        extra_tokens: int = 0,
    ) -> None:
        self.method = method
        self._splitter = splitter
        self.fingerprint = fingerprint
        self.max_chunks = max_chunks
        self._whole = whole
        self.chunk_chars = chunk_chars  # about how many characters a full chunk holds; 0: none
        self.extra_tokens = extra_tokens  # the special tokens and the prefix's, around a chunk

    def split(self, text: str) -> tuple[list[Chunk], bool]:
        """The text's chunks in order, and whether max_chunks cut some text off."""
        return self.split_many([text])[0]

    def split_many(self, texts: Sequence[str]) -> list[tuple[list[Chunk], bool]]:
        """split() of each text; the texts that fit one chunk get it without the splitter."""
        if self._whole is None:
            return [self._split(text) for text in texts]
        splits = [
            (whole, False) if whole is not None else self._split(text)
            for text, whole in zip(texts, self._whole.chunks(texts), strict=True)
        ]
        return self._counted(splits)

    def model_tokens(self, chunk: Chunk) -> int | None:
        """The tokens the model sees for the chunk (its text's, the special tokens' and the
        prefix's); None where the chunker has no tokenizer (the backend counts then)."""
        return None if chunk.tokens is None else chunk.tokens + self.extra_tokens

    def _counted(self, splits: list[tuple[list[Chunk], bool]]) -> list[tuple[list[Chunk], bool]]:
        """The splitter's chunks with their tokens, counted in one batch here, on the chunker's
        thread, beside the model (the whole-text ones were counted when they were fitted)."""
        tokenizer = self._whole.tokenizer if self._whole is not None else None
        uncounted = [c for chunks, _ in splits for c in chunks if c.tokens is None]
        if tokenizer is None or not uncounted:
            return splits
        encodings = tokenizer.encode_batch_fast(
            [c.text for c in uncounted], add_special_tokens=False
        )
        counts = {id(c): len(e) for c, e in zip(uncounted, encodings, strict=True)}
        return [
            ([c if c.tokens is not None else replace(c, tokens=counts[id(c)]) for c in chunks], cut)
            for chunks, cut in splits
        ]

    def _split(self, text: str) -> tuple[list[Chunk], bool]:
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
    "none".

    With "none" the model cuts the whole text at its window, so the window decides what is
    embedded and its size is in the fingerprint ("none:512"); a bare "none" is the model's own
    window, which the config does not state (the fingerprint v0.1 records carried)."""
    if method == "none" or window is None:
        fingerprint = "none" if window is None else f"none:{window.size}"
        return Chunker("none", None, fingerprint, max_chunks=1)
    import semantic_text_splitter as sts

    capacity = window.capacity
    overlap = max(0, min(overlap, capacity // 2))
    splitter_class = sts.MarkdownSplitter if method == "markdown" else sts.TextSplitter
    splitter: _Splitter
    keep_indent = method == "markdown"
    if tokenizer is not None:
        splitter = splitter_class.from_huggingface_tokenizer(tokenizer, capacity, overlap=overlap)
        whole = WholeFit(capacity, tokenizer, keep_indent)
        unit, chunk_chars = "tokens", capacity * 4  # about 4 characters a token of prose
    else:
        splitter = splitter_class(capacity * CHARS_PER_TOKEN, overlap=overlap * CHARS_PER_TOKEN)
        whole = WholeFit(capacity * CHARS_PER_TOKEN, None, keep_indent)
        unit, chunk_chars = "chars", capacity * CHARS_PER_TOKEN
    fingerprint = f"{method}:{capacity}:{overlap}:{max_chunks}:{unit}"
    extra = window.special + window.prefix if tokenizer is not None else 0
    return Chunker(method, splitter, fingerprint, max_chunks, whole, chunk_chars, extra)


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
