"""`embedkeeper switch` under a search load (issue 25): `python -m bench switch`.

An application searches through the serving view (`embedkeeper.docs`) while the serving model is
switched back and forth. What a reader must never see: an error, an empty or short result, or a
result that mixes the two pairs' rows. What the swap costs: how long each switch takes (its
ACCESS EXCLUSIVE lock waits for the searches under way, and the searches that start meanwhile
queue behind it), and the searches' latency while it happens.

The two pairs are told apart by their vectors' dimensions (null backend, 384 and 8), so each
search reads its query vector from the same view in the same statement (as the test
tests/db/test_serving.py does): a reader never has to know which model serves. Vectors are
ranked exactly (no index): each search reads every chunk of the serving pair, the worst case
for the lock's wait. BENCH_SWITCH_DOCS one-chunk documents (default 50,000) per pair,
BENCH_SWITCH_READERS threads searching in a loop (default 2), BENCH_SWITCH_TURNS switches
(default 20), one every BENCH_SWITCH_EVERY_S seconds (default 0.5).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench._database import bench_database

DOCS = int(os.environ.get("BENCH_SWITCH_DOCS", "50000"))
READERS = int(os.environ.get("BENCH_SWITCH_READERS", "2"))
TURNS = int(os.environ.get("BENCH_SWITCH_TURNS", "20"))
EVERY_S = float(os.environ.get("BENCH_SWITCH_EVERY_S", "0.5"))
RESULTS = Path(__file__).with_name("results")
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
MODELS = {"wide": 384, "narrow": 8}
CONFIG = """
[source]
table = "public.docs"
full_text = ""
[[models]]
name = "wide"
backend = "null"
dimensions = 384
[[models]]
name = "narrow"
backend = "null"
dimensions = 8
"""
# The reader's search: the ten nearest chunks to document 1's, all through the serving view.
SEARCH = (
    "SELECT vector_dims(v.embedding), v.embedding <=> q.embedding AS d"
    " FROM embedkeeper.docs AS v CROSS JOIN (SELECT embedding FROM embedkeeper.docs"
    " WHERE document_id = 1 AND chunk = 0) AS q ORDER BY d LIMIT 10"
)


class Readers:
    """Threads searching the serving view until stopped; every result and failure kept."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.results: list[tuple[float, float, tuple[int, ...]]] = []  # start, seconds, dims
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._read) for _ in range(count)]

    def __enter__(self) -> Readers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _read(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    rows = conn.execute(SEARCH).fetchall()
                except psycopg.Error as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.results.append(
                    (start, time.perf_counter() - start, tuple(int(r[0]) for r in rows))
                )


def main() -> None:
    def fill(conn: psycopg.Connection[Any]) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for number in range(1, DOCS + 1):
                copy.write_row((number, f"document {number} about topic {number % 97}"))
        conn.execute("VACUUM ANALYZE docs")

    with bench_database(CONFIG, fill) as database:
        url = database.copy("switch")
        env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": url}
        args = ["--config", str(database.config)]
        for command in ("migrate", "backfill"):
            subprocess.run(
                [str(EMBEDKEEPER), command, *args], env=env, check=True, capture_output=True
            )
        figures = _switch_under_load(url)
    _print(figures)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "switch.json").write_text(json.dumps(figures, indent=2))


def _switch_under_load(url: str) -> dict[str, Any]:
    from embedkeeper.store.pair.tables import PairNames
    from embedkeeper.store.serving.switches import serving_model, switch_to

    swaps: list[tuple[float, float]] = []  # start, seconds
    with psycopg.connect(url, autocommit=True) as conn:
        first = serving_model(conn, "docs")
        assert first is not None, "migrate set the serving model"
        order = [first, *(m for m in MODELS if m != first)]
        with Readers(url, READERS) as readers:
            time.sleep(2 * EVERY_S)  # searches at their pace before the first switch
            before = len(readers.results)
            for turn in range(TURNS):
                old, new = order[turn % 2], order[(turn + 1) % 2]
                start = time.perf_counter()
                switch_to(conn, PairNames.of("docs", new), expected=old)
                swaps.append((start, time.perf_counter() - start))
                time.sleep(EVERY_S)
            load_s = swaps[-1][0] + swaps[-1][1] + EVERY_S - swaps[0][0]
            searches = len(readers.results) - before
        results, errors = readers.results, readers.errors
    during = [s for start, s, _ in results if _overlaps(start, s, swaps)]
    latencies = [s for _, s, _ in results]
    return {
        "documents_per_pair": DOCS,
        "readers": READERS,
        "switches": TURNS,
        "searches": len(results),
        "searches_per_s_while_switching": round(searches / load_s, 1),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "empty_or_short": sum(len(dims) != 10 for _, _, dims in results),
        "mixed": sum(len(set(dims)) > 1 for _, _, dims in results),
        "served": sorted({dims[0] for _, _, dims in results if dims}),
        "switch_ms_p50": round(1000 * statistics.median(s for _, s in swaps), 1),
        "switch_ms_max": round(1000 * max(s for _, s in swaps), 1),
        "search_ms_p50": round(1000 * statistics.median(latencies), 1),
        "search_ms_p95": round(1000 * _quantile(latencies, 0.95), 1),
        "search_ms_max": round(1000 * max(latencies), 1),
        "searches_overlapping_a_switch": len(during),
        "search_ms_max_overlapping_a_switch": round(1000 * max(during, default=0.0), 1),
    }


def _overlaps(start: float, seconds: float, swaps: list[tuple[float, float]]) -> bool:
    return any(start < s + d and s < start + seconds for s, d in swaps)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _print(figures: dict[str, Any]) -> None:
    print(
        f"switch under load: {figures['documents_per_pair']:,} one-chunk documents a pair,"
        f" {figures['readers']} readers, {figures['switches']} switches"
    )
    for key, value in figures.items():
        print(f"  {key:36} {value}")
