"""A Chunker: one document's text in, its chunks (with their character offsets) out.

The same settings always cut a text the same way, and `fingerprint` names them: it is stored
with each document's record, so changing the chunking makes every document stale. It also names
what else decides a chunk's vector (the model, its prefix, normalisation and window: `vectors`),
so a stored vector is kept for an equal passage only where the fingerprint's `vectors` part is
this chunker's (sync/chunked.py).

Each text is tokenized once, with offsets (the model's fast tokenizer, a batch at a time, the
GIL released); a text that fits the window is one chunk, and a longer one is cut where
boundaries.py's content-defined rule says, on those same tokens: a passage's token count is the
document's tokens between its cuts, never counted again. Passages are exact slices of the text,
trimmed of white space, in order, with no overlap. A text longer than SEGMENT_CHARS is cut a
segment at a time (at a paragraph, line or word break), so the tokenizer never holds more than
one segment: a 50 MB text is chunked in bounded memory. `max_chunks` caps the work one document
may cost; a document cut there is reported as `capped`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from embedkeeper.chunking.boundaries import LOW_SHARE, Tokens, bounds, candidates, cut_tokens
from embedkeeper.chunking.tokenizer import Window

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

Chunking = Literal["text", "markdown", "none"]
CHUNKINGS: tuple[Chunking, ...] = ("text", "markdown", "none")
SEGMENT_CHARS = 1_000_000
# With no tokenizer (a server that does not say what it counts), a chunk gets this many
# characters per token of its budget: BERT and BPE vocabularies average about 4 characters per
# token on English prose, so 3 leaves a margin of a quarter. Denser text (code, CJK) may still
# exceed the window; the server then cuts it.
CHARS_PER_TOKEN = 3
# The boundary rule counts a passage's tokens as the document's tokens between two cuts; the
# passage tokenized alone may differ at its ends (a BPE merge across the cut), so a cut chunk
# holds this many tokens fewer than the window allows. A text that fits whole needs no margin:
# its count is the text's own.
SLICE_MARGIN = 2
# What a chunk is trimmed of: Rust's `char::is_whitespace` (the Unicode White_Space property),
# as the tokenizer sees white space; Python's str.strip() would also trim U+001C to U+001F.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The fingerprint's version of the boundary rule: a rule that cuts differently must change it.
RULE = "cdc1"


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int  # 0, 1, 2 ... in the order of the text
    start: int  # character offsets into the document's text: text[start:end] == self.text
    end: int
    text: str
    # Tokens of `text` alone (no special tokens), as the chunker's tokenizer counted them; None
    # without a tokenizer. Carried to the backend, so no chunk is tokenized a second time.
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class _Rule:
    """What the cuts of one chunker obey, in its unit (tokens, or characters)."""

    whole: int  # the most a text may hold and be one chunk
    high: int  # the most a cut chunk may hold
    low: int  # where a chunk's content-defined end may first fall
    sections: bool  # markdown: headings and code fences are cuts of their own


class Chunker:
    def __init__(
        self,
        method: Chunking,
        fingerprint: str,
        max_chunks: int,
        *,
        rule: _Rule | None = None,
        tokenizer: Tokenizer | None = None,
        chunk_chars: int = 0,
        extra_tokens: int = 0,
    ) -> None:
        self.method = method
        self.fingerprint = fingerprint
        self.max_chunks = max_chunks
        self._rule = rule  # None: "none", the whole text
        self._tokenizer = tokenizer
        self.chunk_chars = chunk_chars  # about how many characters a chunk holds; 0: none
        self.extra_tokens = extra_tokens  # the special tokens and the prefix's, around a chunk

    @property
    def vectors(self) -> str:
        """The part of the fingerprint that decides a passage's vector (model, prefix,
        normalisation, window): a stored vector of an equal passage is kept where it matches."""
        return vectors_part(self.fingerprint)

    def split(self, text: str) -> tuple[list[Chunk], bool]:
        """The text's chunks in order, and whether max_chunks cut some text off."""
        return self.split_many([text])[0]

    def split_many(self, texts: Sequence[str]) -> list[tuple[list[Chunk], bool]]:
        """split() of each text: the batch's texts tokenized together, once."""
        if self._rule is None:  # "none": the whole text, which the model cuts at its window
            return [([Chunk(0, 0, len(t), t)] if t.strip() else [], False) for t in texts]
        short = [i for i, text in enumerate(texts) if len(text) <= SEGMENT_CHARS]
        tokens = self._tokens([texts[i] for i in short])
        result: list[tuple[list[Chunk], bool]] = [([], False)] * len(texts)
        whole = self._rule.whole
        for index, text_tokens in zip(short, tokens, strict=True):
            text = texts[index]
            if text_tokens.size_of_whole(text) <= whole:  # most texts: one chunk, nothing cut
                result[index] = (self._whole(text, text_tokens.count), False)
            else:
                result[index] = self._capped(self._cut(text, text_tokens, 0, 0))
        for index, text in enumerate(texts):
            if len(text) > SEGMENT_CHARS:  # a segment at a time, until the cap
                result[index] = self._capped(self._cut_segments(text))
        return result

    def _cut_segments(self, text: str) -> Iterator[Chunk]:
        seq = 0
        for offset, segment in _segments(text, SEGMENT_CHARS):
            for chunk in self._cut(segment, self._tokens([segment])[0], offset, seq):
                yield chunk
                seq += 1

    def _capped(self, chunks: Iterator[Chunk]) -> tuple[list[Chunk], bool]:
        kept: list[Chunk] = []
        for chunk in chunks:
            if len(kept) == self.max_chunks:
                return kept, True
            kept.append(chunk)
        return kept, False

    def model_tokens(self, chunk: Chunk) -> int | None:
        """The tokens the model sees for the chunk (its text's, the special tokens' and the
        prefix's); None where the chunker has no tokenizer (the backend counts then)."""
        return None if chunk.tokens is None else chunk.tokens + self.extra_tokens

    def _tokens(self, segments: list[str]) -> list[_Tokens]:
        """Each segment's tokens, in one batch of the tokenizer (with offsets); with no
        tokenizer every character is a unit of the budget."""
        if self._tokenizer is None:
            return [_Characters(len(segment)) for segment in segments]
        encodings = self._tokenizer.encode_batch(segments, add_special_tokens=False)
        return [_Encoded(e) for e in encodings]

    def _whole(self, text: str, count: int) -> list[Chunk]:
        """The one chunk of a text that fits whole (what _cut makes of it, without its
        generators: at a million short texts they cost more than the chunk)."""
        start, body = _trim(text, keep_indent=self._rule is not None and self._rule.sections)
        if not body:
            return []
        return [Chunk(0, start, start + len(body), body, count if self._tokenizer else None)]

    def _cut(self, text: str, tokens: _Tokens, offset: int, first_seq: int) -> Iterator[Chunk]:
        """The chunks of one segment, trimmed; blank ones left out."""
        assert self._rule is not None
        rule = self._rule
        count = tokens.count
        if tokens.size_of_whole(text) <= rule.whole:
            ends = [count]
        else:
            found = candidates(text, sections=rule.sections)
            ends = cut_tokens(text, tokens, found, low=rule.low, high=rule.high)
        counted = self._tokenizer is not None
        seq, begin, first_token = first_seq, 0, 0
        for end_token in ends:
            end = len(text) if end_token >= count else tokens.start_of(end_token)
            start, body = _trim(text[begin:end], keep_indent=rule.sections)
            if body:
                at = offset + begin + start
                size = end_token - first_token if counted else None
                yield Chunk(seq, at, at + len(body), body, size)
                seq += 1
            begin, first_token = end, end_token


class _Tokens(Tokens, Protocol):
    """boundaries.Tokens, and what a text that fits whole holds of the budget."""

    def size_of_whole(self, text: str) -> int:
        """What the text holds of the budget, as one chunk (white space at its ends aside)."""
        ...


class _Encoded:
    """A segment's tokens as the tokenizer found them (its offsets, read a token at a time:
    the boundary rule asks about a few of them, never all)."""

    def __init__(self, encoding: Encoding) -> None:
        self._encoding = encoding
        self.count = len(encoding)

    def size_of_whole(self, text: str) -> int:
        return self.count  # white space is no token

    def starting_at(self, position: int) -> int | None:
        return self._encoding.char_to_token(position)

    def start_of(self, token: int) -> int:
        span = self._encoding.token_to_chars(token)
        assert span is not None
        return int(span[0])


class _Characters:
    """A segment with no tokenizer: each character a unit of the budget."""

    def __init__(self, count: int) -> None:
        self.count = count

    def size_of_whole(self, text: str) -> int:
        return len(text.strip(WHITESPACE))

    def starting_at(self, position: int) -> int | None:
        return position if position < self.count else None

    def start_of(self, token: int) -> int:
        return token


def vectors_part(fingerprint: str) -> str:
    """What follows `;v=` in a fingerprint ("" for one made before it named its vectors)."""
    _, _, vectors = fingerprint.partition(";v=")
    return vectors


def _trim(text: str, keep_indent: bool) -> tuple[int, str]:
    """Where a passage starts within its slice, and its text: trimmed of white space at both
    ends, or for markdown, where it spans lines, of leading line breaks only (an indented
    first line keeps its indentation)."""
    body = text.strip(WHITESPACE)
    if keep_indent and ("\n" in body or "\r" in body):
        head = text.lstrip("\r\n")
        return len(text) - len(head), head.rstrip(WHITESPACE)
    return len(text) - len(text.lstrip(WHITESPACE)), body


def make_chunker(
    method: Chunking,
    *,
    window: Window | None,
    tokenizer: Tokenizer | None,
    max_chunks: int = 1024,
    vectors: str = "",
) -> Chunker:
    """A chunker for `method`: by the tokenizer's tokens when there is one, else by characters
    (CHARS_PER_TOKEN per token). `window` None (a model whose window is unknown) only with
    "none". `vectors` names what else decides a vector (for_model.vectors_key); it ends the
    fingerprint.

    With "none" the model cuts the whole text at its window, so the window decides what is
    embedded and its size is in the fingerprint ("none:512"); a bare "none" is the model's own
    window, which the config does not state (the fingerprint v0.1 records carried)."""
    tail = f";v={vectors}" if vectors else ""
    if method == "none" or window is None:
        fingerprint = "none" if window is None else f"none:{window.size}"
        return Chunker("none", fingerprint + tail, max_chunks=1)
    capacity = window.capacity
    sections = method == "markdown"
    if tokenizer is not None:
        unit, whole, chars_per_unit = "tokens", capacity, 4  # ~4 characters a token of prose
        extra = window.special + window.prefix
    else:
        unit, whole, chars_per_unit = "chars", capacity * CHARS_PER_TOKEN, 1
        extra = 0
    high = max(1, whole - (SLICE_MARGIN if tokenizer is not None else 0))
    rule = _Rule(whole, high, bounds(LOW_SHARE, high), sections)
    # A cut chunk ends between `low` and `high`: about half-way on average (129 tokens of 252
    # for MiniLM on Debian's documents, docs/design/edit-cost.md).
    chunk_chars = (rule.low + rule.high) // 2 * chars_per_unit
    fingerprint = f"{method}:{RULE}:{capacity}:{max_chunks}:{unit}{tail}"
    return Chunker(
        method,
        fingerprint,
        max_chunks,
        rule=rule,
        tokenizer=tokenizer,
        chunk_chars=chunk_chars,
        extra_tokens=extra,
    )


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
