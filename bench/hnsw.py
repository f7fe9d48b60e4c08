"""A backfill into a table with a live HNSW index, against `backfill --defer-index` (issue 7,
point 4): `python -m bench hnsw`.

DOCS documents (BENCH_HNSW_DOCS), one model of 384 dimensions whose HNSW index
(`embedkeeper index create`, cosine, m 16, ef_construction 64) exists before the backfill, as a
user's would. A: a plain backfill, every upsert inserting into the graph. B: `--defer-index`, the
index dropped first and rebuilt in bulk after (the rebuild is inside the time). Each run gets a
fresh copy of the same table; runs alternate A B A B, BENCH_PAIRS pairs, medians reported.

The backfill runs in this process (`embedkeeper.commands.backfill.backfill`, the code behind the
command) so
that the backend can be chosen. BENCH_HNSW_VECTORS=distinct (default) gives each document its
own random unit vector, instantly, as a real model's vectors differ; `null` is the null backend,
one fixed vector for every document, which an HNSW graph inserts far faster than real data (all
distances are zero), so it understates the cost of a live index.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from bench._database import NULL_CONFIG, BenchDatabase, bench_database
from embedkeeper.config import ModelConfig, load_config
from embedkeeper.records import Document, Embedded

DOCS = int(os.environ.get("BENCH_HNSW_DOCS", "30000"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
VECTORS = os.environ.get("BENCH_HNSW_VECTORS", "distinct")
RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = NULL_CONFIG + "claim_size = 1000\n"


class DistinctVectors:
    """Like the null backend, but each document gets its own random unit vector."""

    dimensions = 384
    max_chars = 1024
    request_size = 1 << 30
    concurrency = 1

    def __init__(self, model: ModelConfig) -> None:
        self.rng = np.random.default_rng(7)

    def embed(self, documents: Sequence[Document]) -> list[Embedded]:
        block = self.rng.standard_normal((len(documents), self.dimensions)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        return [
            Embedded(d, v, token_count=0, truncated=d.cut)
            for d, v in zip(documents, block, strict=True)
        ]

    def close(self) -> None:
        pass


class RebuildTimes(logging.Handler):
    """Collects `build_s` of the index_rebuilt events: the rebuild's share of a deferred run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "index_rebuilt":
            self.seconds.append(float(record.fields["build_s"]))  # type: ignore[attr-defined]


REBUILDS = RebuildTimes()


def main() -> None:
    index_log = logging.getLogger("embedkeeper.store.index.vector_index")
    index_log.setLevel(logging.INFO)
    index_log.addHandler(REBUILDS)
    with bench_database(CONFIG, _fill) as database:
        runs: dict[str, list[dict[str, float]]] = {"live": [], "deferred": []}
        for pair in range(PAIRS):
            for mode in ("live", "deferred"):
                url = database.copy(f"p{pair}_{mode}")
                runs[mode].append(_run(database, url, defer=mode == "deferred"))
                print(f"  pair {pair + 1} {mode:8} {runs[mode][-1]}", flush=True)
    _report(runs)


def _fill(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO docs SELECT g, 'bench document ' || g FROM generate_series(1, %s) g", (DOCS,)
    )


def _run(database: BenchDatabase, url: str, *, defer: bool) -> dict[str, float]:
    from embedkeeper.app import open_app
    from embedkeeper.backends import make_backend
    from embedkeeper.commands.backfill import backfill
    from embedkeeper.store.db import connect
    from embedkeeper.store.index.index_build import BuildSettings, HnswParams
    from embedkeeper.store.index.vector_index import create_index

    config = load_config(database.config, overrides={"EMBEDKEEPER_DATABASE_URL": url})
    factory = DistinctVectors if VECTORS == "distinct" else make_backend
    app = open_app(config, backend_factory=factory)
    pair = app.pair(config.models[0])
    names = pair.names
    with connect(url) as conn:
        # <pair>_hnsw on <pair>_chunks (the pair's tables are made first).
        create_index(conn, app.index_target(conn, pair), HnswParams(), BuildSettings())
    REBUILDS.seconds.clear()
    start = time.perf_counter()
    try:
        backfill(app, config.models, stop=threading.Event(), defer_index=defer)
    finally:
        app.close()
    elapsed = time.perf_counter() - start
    rebuild_s = sum(REBUILDS.seconds)
    with connect(url) as conn:
        target = app.index_target(conn, pair)
        # Every document one record and one chunk (its text is short), and the pair's HNSW
        # index valid on the chunks after the backfill (rebuilt, with --defer-index).
        row = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {documents}), (SELECT count(*) FROM {chunks}),"
                " (SELECT bool_and(i.indisvalid) FROM pg_index AS i"
                "  WHERE i.indexrelid = to_regclass(%s) AND i.indrelid = %s::regclass)"
            ).format(documents=names.documents, chunks=names.chunks),
            (f"embedkeeper.{target.index}", f"embedkeeper.{target.table}"),
        ).fetchone()
    assert row == (DOCS, DOCS, True), row
    return {
        "seconds": round(elapsed, 2),
        "docs_per_s": round(DOCS / elapsed, 1),
        "rebuild_s": round(rebuild_s, 2),
    }


def _report(runs: dict[str, list[dict[str, float]]]) -> None:
    def median(mode: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[mode]))

    live, deferred = median("live", "docs_per_s"), median("deferred", "docs_per_s")
    print(
        f"\nbackfill into a live HNSW index vs --defer-index, {DOCS} documents, "
        f"{VECTORS} vectors, median of {PAIRS} pairs (alternating)"
    )
    print(f"{'mode':>22}  {'docs/s':>8}  {'seconds':>8}  runs (docs/s)")
    for mode, label in (("live", "live index"), ("deferred", "--defer-index")):
        figures = ", ".join(f"{r['docs_per_s']:.0f}" for r in runs[mode])
        print(
            f"{label:>22}  {median(mode, 'docs_per_s'):>8.0f}  {median(mode, 'seconds'):>8.1f}"
            f"  {figures}"
        )
    print(f"{'ratio':>22}  {deferred / live:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "hnsw.json"
    out.write_text(
        json.dumps(
            {
                "docs": DOCS,
                "pairs": PAIRS,
                "vectors": VECTORS,
                "live_docs_per_s": live,
                "deferred_docs_per_s": deferred,
                "ratio": deferred / live,
                "deferred_rebuild_s": median("deferred", "rebuild_s"),
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"written {out}")
