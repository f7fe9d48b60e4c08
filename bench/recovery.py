"""Time to recover from faults, measured on real processes (`make bench`, or
`python -m bench recovery`): the null backend on DOCS documents, so the figures are the daemon's
own, not the model's.

- kill -9 mid-backfill: seconds from the kill until a rerun writes again, and until it is done;
- SIGTERM mid-backfill: seconds from the signal to the exit;
- a network cut mid-backfill (TCP proxy): seconds from the cut until vectors are written again;
- database down at start: seconds from the database coming up until the daemon says READY=1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._database import NULL_CONFIG, BenchDatabase, bench_database
from embedkeeper.models.pairs import pair_base_name
from tests.tcp_proxy import TcpProxy

DOCS = int(os.environ.get("BENCH_RECOVERY_DOCS", "100000"))
RESULTS = Path(__file__).resolve().parent / "results"
PAIR = pair_base_name("docs", "null")  # embedkeeper.<PAIR>_documents: a record per document
EMBEDKEEPER = Path(sys.executable).with_name("embedkeeper")
CONFIG = (
    NULL_CONFIG
    + """claim_size = 500
[schedule]
interval = "1s"
[retry]
transient_backoff_max = "2s"
"""
)


def main() -> None:
    with bench_database(CONFIG, _fill) as database:
        proxy = TcpProxy(database.unix_socket)
        proxy.up()
        try:
            figures = {
                "kill -9 mid-backfill, rerun at once": _kill(database),
                "SIGTERM mid-backfill": _sigterm(database),
                "network cut mid-backfill": _cut(database, proxy),
                "database down at start, then up": _down_at_start(database, proxy),
            }
        finally:
            proxy.stop()
    print(f"\nrecovery, null backend, {DOCS} documents")
    for name, result in figures.items():
        print(f"  {name:38} " + ", ".join(f"{k}={v}" for k, v in result.items()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "recovery.json").write_text(json.dumps({"docs": DOCS, "faults": figures}, indent=2))


def _fill(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO docs SELECT g, 'document ' || g FROM generate_series(1, %s) g", (DOCS,)
    )


def _start(url: str, config: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(EMBEDKEEPER), *args, "--config", str(config)],
        env={**os.environ, "EMBEDKEEPER_DATABASE_URL": url, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _count(url: str) -> int:
    """Documents embedded: the pair's records (0 until the first backfill makes its tables)."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"embedkeeper.{PAIR}_documents",))
        if exists.fetchone() == (None,):
            return 0
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier("embedkeeper", f"{PAIR}_documents")
            )
        ).fetchone()
    return int(row[0]) if row else 0


def _until(predicate: Callable[[], bool], timeout_s: float = 120) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout_s:
            raise SystemExit("timed out")
        time.sleep(0.01)
    return time.perf_counter() - start


def _kill(database: BenchDatabase) -> dict[str, float | int]:
    url, config = database.copy("kill"), database.config
    child = _start(url, config, "backfill")
    _until(lambda: _count(url) >= DOCS // 3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = _count(url)
    killed_at = time.perf_counter()
    rerun = _start(url, config, "backfill")
    resumed = _until(lambda: _count(url) > left)
    rerun.wait()
    done = time.perf_counter() - killed_at
    assert _count(url) == DOCS
    return {
        "first_write_s": round(resumed, 2),
        "done_s": round(done, 2),
        "documents_left": DOCS - left,
    }


def _sigterm(database: BenchDatabase) -> dict[str, float | int]:
    url, config = database.copy("term"), database.config
    child = _start(url, config, "backfill")
    _until(lambda: _count(url) >= DOCS // 3)
    start = time.perf_counter()
    child.send_signal(signal.SIGTERM)
    code = child.wait()
    return {"exit_s": round(time.perf_counter() - start, 2), "exit_code": code}


def _cut(database: BenchDatabase, proxy: TcpProxy) -> dict[str, float | int]:
    url, config = database.copy("cut"), database.config
    child = _start(url, config, "backfill", EMBEDKEEPER_DATABASE_URL=proxy.url("cut"))
    _until(lambda: _count(url) >= DOCS // 3)
    proxy.cut()
    at_cut = _count(url)
    resumed = _until(lambda: _count(url) > at_cut + 500)  # a whole batch after the cut
    code = child.wait()
    assert code == 0
    assert _count(url) == DOCS
    return {"writing_again_s": round(resumed, 2), "exit_code": code}


def _down_at_start(database: BenchDatabase, proxy: TcpProxy) -> dict[str, float | int]:
    url, config = database.copy("down"), database.config
    proxy.down()
    path = str(database.home / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(60)
        child = _start(
            url, config, "run", EMBEDKEEPER_DATABASE_URL=proxy.url("down"), NOTIFY_SOCKET=path
        )
        time.sleep(3)
        up = time.perf_counter()
        proxy.up()
        assert sock.recv(100) == b"READY=1"
        ready = time.perf_counter() - up
        child.send_signal(signal.SIGTERM)
        child.wait()
    return {"ready_after_up_s": round(ready, 2)}
