"""What `full_text` costs a backfill: the null backend (so only embedkeeper and PostgreSQL are
measured) over real long documents (this machine's Debian documentation), `embedkeeper
backfill` with `full_text` off and on, legs alternated (off, on, off, on, ...) on fresh copies
of one database, chunks/s each and the ratio per pair.

BENCH_FULL_TEXT_DOCS (default 1,300) documents of 4,000 to 40,000 characters; BENCH_PAIRS
(default 2) pairs of legs; BENCH_FULL_TEXT (default "english") the configuration of the "on"
legs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench._corpus import long_documents
from bench._database import bench_database

DOCS = int(os.environ.get("BENCH_FULL_TEXT_DOCS", "1300"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "2"))
CONFIGURATION = os.environ.get("BENCH_FULL_TEXT", "english")
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
CONFIG = """
[source]
table = "public.docs"
{full_text}
[[models]]
name = "null"
backend = "null"
dimensions = 384
"""


def main() -> None:
    texts = long_documents(DOCS)

    def fill(conn: psycopg.Connection[Any]) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for number, text in enumerate(texts, start=1):
                copy.write_row((number, text.replace("\x00", "")))
        conn.execute("VACUUM ANALYZE docs")

    with bench_database(CONFIG.format(full_text='full_text = ""'), fill) as database:
        configs = {}
        for leg, line in (("off", 'full_text = ""'), ("on", f'full_text = "{CONFIGURATION}"')):
            configs[leg] = database.home / f"full_text_{leg}.toml"
            configs[leg].write_text(CONFIG.format(full_text=line))
        rates: dict[str, list[float]] = {"off": [], "on": []}
        chunk_count = 0
        for number in range(PAIRS):
            for leg in ("off", "on"):
                url = database.copy(f"{leg}{number}")
                chunks, seconds = _backfill(url, configs[leg])
                chunk_count = chunks
                rates[leg].append(chunks / seconds)
                print(
                    f"  {leg:>3}, pair {number + 1}: {chunks:,} chunks in {seconds:.1f} s,"
                    f" {chunks / seconds:,.0f} chunks/s"
                )
                database.drop(f"{leg}{number}")
    ratios = [on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
    print(
        f"full_text cost, {len(texts):,} documents, {chunk_count:,} chunks (null backend):"
        f" on/off chunks/s per pair {', '.join(f'{r:.3f}' for r in ratios)};"
        f" median {statistics.median(ratios):.3f}"
    )


def _backfill(url: str, config: Path) -> tuple[int, float]:
    """migrate (makes the pair and its full-text column), then backfill; chunks written and the
    backfill's seconds."""
    env = {**os.environ, "EMBEDKEEPER_DATABASE_URL": url}
    args = ["--config", str(config)]
    subprocess.run([str(EMBEDKEEPER), "migrate", *args], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run([str(EMBEDKEEPER), "backfill", *args], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM embedkeeper.docs__null_chunks").fetchone()
        assert row is not None
    return int(row[0]), seconds
