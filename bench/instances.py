"""Scale-out throughput: 1, 2 and 4 `embedkeeper backfill` processes sharing one PostgreSQL and
DOCS documents, with the null backend so that the database path is what is measured.

Each round gets a fresh copy of the same table (CREATE DATABASE ... TEMPLATE); rounds alternate
1, 2, 4, 1, 2, 4 ... so drift on a noisy machine hits every setting alike. The figure is documents
per second of wall time from starting the processes to the last exit, start-up included.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._database import NULL_CONFIG, bench_database
from embedkeeper.models.pairs import pair_base_name

DOCS = int(os.environ.get("BENCH_DOCS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SETTINGS = (1, 2, 4)
RESULTS = Path(__file__).resolve().parent / "results"
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
CONFIG = NULL_CONFIG + "claim_size = 500\n"
PAIR = pair_base_name("docs", "null")  # embedkeeper.<PAIR>_documents, _chunks


def main() -> None:
    with bench_database(CONFIG, _fill) as database:
        figures: dict[int, list[float]] = {n: [] for n in SETTINGS}
        for round_no in range(ROUNDS):
            for instances in SETTINGS:
                url = database.copy(f"r{round_no}_{instances}")
                figures[instances].append(_run(url, database.config, instances))
        _report(figures)


def _fill(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO docs SELECT g, 'bench document ' || g || ' ' || repeat('x', g %% 400)"
        " FROM generate_series(1, %s) g",
        (DOCS,),
    )


def _run(url: str, config: Path, instances: int) -> float:
    env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": url}
    start = time.perf_counter()
    children = [
        subprocess.Popen(
            [str(EMBEDKEEPER), "backfill", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(instances)
    ]
    for child in children:
        _, err = child.communicate(timeout=600)
        if child.returncode != 0:
            raise SystemExit(f"backfill failed ({child.returncode}): {err.decode()[-2000:]}")
    elapsed = time.perf_counter() - start
    # Every document embedded once, whoever claimed it: one current record each, and its one
    # chunk (the texts are under the null model's window).
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*),"
                " count(*) FILTER (WHERE e.content_hash = decode(md5(d.body), 'hex')),"
                " (SELECT count(*) FROM {chunks})"
                " FROM docs AS d JOIN {documents} AS e ON e.document_id = d.id"
            ).format(
                documents=sql.Identifier("embedkeeper", f"{PAIR}_documents"),
                chunks=sql.Identifier("embedkeeper", f"{PAIR}_chunks"),
            )
        ).fetchone()
    assert row == (DOCS, DOCS, DOCS), row
    return DOCS / elapsed


def _report(figures: dict[int, list[float]]) -> None:
    base = statistics.median(figures[1])
    print(f"\nscale-out, null backend, {DOCS} documents, median of {ROUNDS} rounds (alternating)")
    print(f"{'instances':>9}  {'docs/s':>9}  {'vs 1':>5}  runs")
    rows = []
    for n in SETTINGS:
        median = statistics.median(figures[n])
        runs = ", ".join(f"{x:.0f}" for x in figures[n])
        print(f"{n:>9}  {median:>9.0f}  {median / base:>5.2f}  {runs}")
        rows.append(
            {"instances": n, "docs_per_s": median, "ratio_to_1": median / base, "runs": figures[n]}
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "instances.json"
    out.write_text(json.dumps({"docs": DOCS, "rounds": ROUNDS, "results": rows}, indent=2))
    print(f"written {out}")
