"""Prototype for issue 24: a single-pass, content-defined (sentence-anchored) chunker, and what an
edit costs with it versus today's chunker. Standalone; run from the repository root:

    .venv/bin/python docs/design/edit_cost_prototype.py            # the figures (~60 s)
    .venv/bin/python docs/design/edit_cost_prototype.py --sweep    # MIN / divisor sweep (~10 s)

Rule (see docs/design/edit-cost.md):
  * one tokenizer pass per document with offsets (encode_batch, add_special_tokens=False);
  * candidate cuts at paragraph ends, sentence ends and line ends (regex on the text), mapped to
    the index of the first token at or after the cut;
  * a candidate is an *anchor* when a stable hash (blake2b) of the unit ending there (the text
    since the previous candidate, stripped) is 0 modulo a per-level divisor;
  * scanning from a chunk's first token: candidates under MIN tokens are ignored, the first anchor
    between MIN and MAX tokens cuts; if none, the in-range candidate of highest level with the
    smallest hash cuts (still decided by content); if no candidate at all, cut at MAX tokens;
  * passages are exact, contiguous slices text[b_k:b_{k+1}] (no overlap) covering the text.
"""

# A report script: it prints its figures.
# ruff: noqa: T201
from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import hashlib
import re
import statistics
import sys
import time
from bisect import bisect_left
from dataclasses import dataclass

sys.path.insert(0, "/work/main")

MIN_TOKENS = 96
MAX_TOKENS = 252  # tokens of text per chunk, counted on the document's own tokens
LIMIT_TOKENS = 254  # what today's chunker allows a chunk's text (256 window - 2 special)
# Per level: 3 paragraph end, 2 sentence end, 1 line end. An anchor when hash % divisor == 0.
DIVISORS = {3: 2, 2: 4, 1: 8}

_CANDIDATE = re.compile(r"\n[ \t]*\n\s*|[.!?][\"')\]]*\s+|\n\s*")


@dataclass(frozen=True, slots=True)
class Passage:
    start: int
    end: int
    text: str
    tokens: int


def _hash(unit: str) -> int:
    return int.from_bytes(hashlib.blake2b(unit.strip().encode(), digest_size=8).digest(), "big")


def candidates(text: str, starts: list[int]) -> list[tuple[int, int, int]]:
    """(token index, level, hash) of each candidate cut, in order, one per token index (the
    highest level there). A cut at token index t means the chunk ends before token t."""
    n = len(starts)
    out: list[tuple[int, int, int]] = []
    prev = 0
    for m in _CANDIDATE.finditer(text):
        pos = m.end()
        s = m.group()
        level = 3 if s.count("\n") >= 2 else 2 if s[0] in ".!?" else 1
        t = bisect_left(starts, pos)
        if t == 0 or t >= n:
            continue
        h = _hash(text[prev:pos])
        prev = pos
        if out and out[-1][0] == t:
            if level > out[-1][1]:
                out[-1] = (t, level, h)
            continue
        out.append((t, level, h))
    return out


def cuts(
    n_tokens: int,
    cands: list[tuple[int, int, int]],
    lo: int = MIN_TOKENS,
    hi: int = MAX_TOKENS,
    fallback: str = "hash",
) -> list[int]:
    """Token indices where chunks end (the last is n_tokens)."""
    result: list[int] = []
    s = 0
    i = 0
    while s < n_tokens:
        while i < len(cands) and cands[i][0] <= s:
            i += 1
        s = _next_cut(n_tokens, cands, i, s, lo, hi, fallback)
        result.append(s)
    return result


def _next_cut(
    n_tokens: int,
    cands: list[tuple[int, int, int]],
    i: int,
    s: int,
    lo: int,
    hi: int,
    fallback: str,
) -> int:
    """Where the chunk starting at token s ends; cands[i:] are the candidates after s."""
    best: tuple[tuple[int, ...], int] | None = None
    last_under = None
    for j in range(i, len(cands)):
        t, level, h = cands[j]
        if t - s > hi:
            break
        last_under = t
        if t - s < lo:
            continue
        if h % DIVISORS[level] == 0:
            return t  # an anchor
        if fallback == "last":  # the last sentence or paragraph end, else the last line end
            key: tuple[int, ...] = (min(level, 2),)
            if best is None or key >= best[0]:
                best = (key, t)
        elif best is None or (level, -h) > best[0]:
            best = ((level, -h), t)  # highest level, then smallest hash
    if n_tokens - s <= hi:
        return n_tokens  # the rest fits and holds no anchor: the last chunk
    if best is not None:
        return best[1]
    # no candidate between lo and hi: the last candidate under hi, else a positional cut
    return last_under if last_under is not None else s + hi


def chunk_encoded(text: str, offsets: list[tuple[int, int]], **kw) -> list[Passage]:
    starts = [o[0] for o in offsets]
    n = len(starts)
    if n == 0:
        return [Passage(0, len(text), text, 0)] if text else []
    ends = cuts(n, candidates(text, starts), **kw)
    out: list[Passage] = []
    a, ta = 0, 0
    for t in ends:
        b = len(text) if t == n else starts[t]
        out.append(Passage(a, b, text[a:b], t - ta))
        a, ta = b, t
    return out


def chunk_many(tok, texts: list[str], **kw) -> list[list[Passage]]:
    encs = tok.encode_batch(texts, add_special_tokens=False)
    return [chunk_encoded(t, e.offsets, **kw) for t, e in zip(texts, encs, strict=True)]


def check(text: str, passages: list[Passage]) -> None:
    assert "".join(p.text for p in passages) == text
    pos = 0
    for p in passages:
        assert p.start == pos
        assert text[p.start : p.end] == p.text
        assert p.tokens <= MAX_TOKENS
        pos = p.end
    assert pos == len(text)


# --- edits -------------------------------------------------------------------------------------

SENTENCE = "This sentence was inserted here to see how the chunk boundaries resynchronise. "
PARAGRAPH = (
    "\n\nAn appended paragraph: it adds a few sentences at the end of the document. "
    "Only the last chunks should change. Everything before them should be reused.\n"
)


def insert_sentence(text: str) -> str:
    mid = len(text) // 2
    m = re.compile(r"[.!?]\s+").search(text, mid)
    pos = m.end() if m else mid
    return text[:pos] + SENTENCE + text[pos:]


def change_word(text: str) -> str:
    mid = len(text) // 2
    m = re.compile(r"\b[A-Za-z]{4,}\b").search(text, mid) or re.compile(r"\w+").search(text)
    return text[: m.start()] + "zebra" + text[m.end() :]


def append_paragraph(text: str) -> str:
    return text.rstrip() + PARAGRAPH


EDITS = {
    "insert sentence mid": insert_sentence,
    "change one word mid": change_word,
    "append paragraph": append_paragraph,
}


def new_share(old: list[str], new: list[str]) -> tuple[float, float]:
    """Share of the new document's chunks, and of its characters, in passages not in the old."""
    seen = set(old)
    fresh = [t for t in new if t not in seen]
    return len(fresh) / max(1, len(new)), sum(map(len, fresh)) / max(1, sum(map(len, new)))


def pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    from tokenizers import Tokenizer

    from bench._corpus import long_documents
    from embedkeeper.backends.local import resolve_model_path
    from embedkeeper.chunking.for_model import model_chunking
    from embedkeeper.config.settings import DEFAULT_MODEL

    texts = long_documents(100, 10_000, 100_000)
    tok = Tokenizer.from_file(resolve_model_path(DEFAULT_MODEL.model) + "/tokenizer.json")
    tok.no_truncation()
    tok.no_padding()
    product = model_chunking(DEFAULT_MODEL).chunker
    chars = sum(map(len, texts))
    print(f"{len(texts)} texts, {chars:,} characters")

    # (a) speed, CPU seconds of this process (all threads), tokenizer limited to one thread
    t0 = time.process_time()
    encs = tok.encode_batch(texts, add_special_tokens=False)
    bare = time.process_time() - t0
    ntok = sum(len(e) for e in encs)
    t0 = time.process_time()
    proto = chunk_many(tok, texts)
    proto_s = time.process_time() - t0
    t0 = time.process_time()
    today = product.split_many(texts)
    today_s = time.process_time() - t0
    for t, ps in zip(texts, proto, strict=True):
        check(t, ps)
    np_ = sum(map(len, proto))
    nt = sum(len(c) for c, _ in today)
    print(f"tokens {ntok:,}")
    print(
        f"bare encode_batch+offsets: {bare:.2f} s, {ntok / bare:,.0f} tokens/s,"
        f" {chars / bare / 1e6:.2f} MB/s"
    )
    print(
        f"prototype: {np_} chunks, {proto_s:.2f} s, {np_ / proto_s:,.0f} chunks/s,"
        f" {chars / proto_s / 1e6:.2f} MB/s"
    )
    print(
        f"today: {nt} chunks, {today_s:.2f} s, {nt / today_s:,.0f} chunks/s,"
        f" {chars / today_s / 1e6:.3f} MB/s"
    )

    # re-encoding each passage alone: how many exceed the limit?
    ptexts = [p.text for ps in proto for p in ps]
    alone = [len(e) for e in tok.encode_batch_fast(ptexts, add_special_tokens=False)]
    diffs = [a - p.tokens for a, p in zip(alone, (p for ps in proto for p in ps), strict=True)]
    print(
        f"re-encoded alone: max {max(alone)} tokens, over {LIMIT_TOKENS}:"
        f" {sum(a > LIMIT_TOKENS for a in alone)}, alone-minus-slice min {min(diffs)}"
        f" max {max(diffs)}, differing {sum(d != 0 for d in diffs)}"
    )

    # (c) sizes
    psizes = [p.tokens for ps in proto for p in ps]
    tsizes = [c.tokens for cs, _ in today for c in cs]
    for name, s in (("prototype", psizes), ("today", tsizes)):
        print(
            f"sizes {name}: median {statistics.median(s)}, p10 {pct(s, 0.1)}, p90 {pct(s, 0.9)},"
            f" min {min(s)}, max {max(s)}"
        )
    positional = 0
    for t, e, ps in zip(texts, encs, proto, strict=True):
        starts = [o[0] for o in e.offsets]
        cset = {c[0] for c in candidates(t, starts)}
        positional += sum(1 for p in ps[:-1] if bisect_left(starts, p.end) not in cset)
    print(f"prototype positional cuts: {positional} of {np_}")

    # (b) resync
    fallback_last = [
        chunk_encoded(t, e.offsets, fallback="last") for t, e in zip(texts, encs, strict=True)
    ]
    for kind, edit in EDITS.items():
        edited = [edit(t) for t in texts]
        p_new = chunk_many(tok, edited)
        p_last = chunk_many(tok, edited, fallback="last")
        t_new = product.split_many(edited)
        rows = {"prototype": [], "prototype/last": [], "today": []}
        for i, text in enumerate(edited):
            check(text, p_new[i])
            rows["prototype"].append(
                new_share([p.text for p in proto[i]], [p.text for p in p_new[i]])
            )
            rows["prototype/last"].append(
                new_share([p.text for p in fallback_last[i]], [p.text for p in p_last[i]])
            )
            rows["today"].append(
                new_share([c.text for c in today[i][0]], [c.text for c in t_new[i][0]])
            )
        for name, r in rows.items():
            fc = [a for a, _ in r]
            fch = [b for _, b in r]
            print(
                f"resync {kind:22s} {name:15s} new chunks mean {statistics.mean(fc):.1%}"
                f" median {statistics.median(fc):.1%} p90 {pct(fc, 0.9):.1%};"
                f" new chars mean {statistics.mean(fch):.1%} median {statistics.median(fch):.1%}"
            )
        # absolute count of new chunks
        for name, new_lists, old_lists in (
            (
                "prototype",
                [[p.text for p in ps] for ps in p_new],
                [[p.text for p in ps] for ps in proto],
            ),
            (
                "today",
                [[c.text for c in cs] for cs, _ in t_new],
                [[c.text for c in cs] for cs, _ in today],
            ),
        ):
            counts = [
                sum(1 for x in n if x not in set(o))
                for n, o in zip(new_lists, old_lists, strict=True)
            ]
            print(
                f"   {name:10s} new chunks per doc: median {statistics.median(counts)},"
                f" mean {statistics.mean(counts):.1f}, max {max(counts)}"
            )
        # new tokens to embed per document (the model's cost, before special tokens)
        for name, pairs in (
            (
                "prototype",
                [
                    ([(p.text, p.tokens) for p in o], [(p.text, p.tokens) for p in n])
                    for o, n in zip(proto, p_new, strict=True)
                ],
            ),
            (
                "today",
                [
                    ([(c.text, c.tokens) for c in o], [(c.text, c.tokens) for c in n])
                    for (o, _), (n, _) in zip(today, t_new, strict=True)
                ],
            ),
        ):
            nt = [sum(k for x, k in n if x not in {y for y, _ in o}) for o, n in pairs]
            print(
                f"   {name:10s} new tokens per doc: median {statistics.median(nt)},"
                f" mean {statistics.mean(nt):.0f}"
            )
    print(
        f"tokens embedded for the whole corpus: prototype {sum(psizes):,},"
        f" today {sum(tsizes):,} (today has 32-token overlap)"
    )


def sweep() -> None:
    """MIN and divisors against size and resync (new chars share, new tokens per doc)."""
    from tokenizers import Tokenizer

    from bench._corpus import long_documents
    from embedkeeper.backends.local import resolve_model_path
    from embedkeeper.config.settings import DEFAULT_MODEL

    texts = long_documents(100, 10_000, 100_000)
    tok = Tokenizer.from_file(resolve_model_path(DEFAULT_MODEL.model) + "/tokenizer.json")
    tok.no_truncation()
    tok.no_padding()
    encs = tok.encode_batch(texts, add_special_tokens=False)
    eds = {k: [f(t) for t in texts] for k, f in EDITS.items()}
    eencs = {k: tok.encode_batch(v, add_special_tokens=False) for k, v in eds.items()}
    saved = dict(DIVISORS)
    for lo, div in (
        (96, {3: 2, 2: 4, 1: 8}),
        (128, {3: 2, 2: 4, 1: 8}),
        (128, {3: 2, 2: 8, 1: 16}),
        (160, {3: 2, 2: 4, 1: 8}),
    ):
        DIVISORS.update(div)
        old = [chunk_encoded(t, e.offsets, lo=lo) for t, e in zip(texts, encs, strict=True)]
        sizes = [p.tokens for ps in old for p in ps]
        line = (
            f"min {lo} div {div}: chunks {len(sizes)} median {statistics.median(sizes)}"
            f" p10 {pct(sizes, 0.1)} p90 {pct(sizes, 0.9)} |"
        )
        for k in EDITS:
            new = [
                chunk_encoded(t, e.offsets, lo=lo) for t, e in zip(eds[k], eencs[k], strict=True)
            ]
            ch = [
                new_share([p.text for p in o], [p.text for p in n])[1]
                for o, n in zip(old, new, strict=True)
            ]
            nt = [
                sum(p.tokens for p in n if p.text not in {q.text for q in o})
                for o, n in zip(old, new, strict=True)
            ]
            line += f" {k}: chars {statistics.mean(ch):.1%} newtok/doc {statistics.mean(nt):.0f};"
        print(line, flush=True)
    DIVISORS.update(saved)


if __name__ == "__main__":
    sweep() if "--sweep" in sys.argv else main()
