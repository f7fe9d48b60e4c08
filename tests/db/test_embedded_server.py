"""The embedded PostgreSQL's stop after a crashed backend: a process that met the crash and exits
must not wait out pg_ctl's minute (PostgreSQL 18.3 loses a fast stop that arrives while the
postmaster restarts after the crash), and nothing committed is lost by how it stops.

Each test runs its own server in a subprocess, in its own data directory: the crash would kill
every session of the tests' shared server, and pgserver stops a server when its last process
exits, which is the moment under test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

# Starts the embedded server as every command does (store.db.start_embedded), commits a row,
# kills its own backend with SIGSEGV (a crash: the postmaster restarts every process and runs
# crash recovery, unlike pg_terminate_backend), and exits as soon as the connection reports it,
# as a command that met the crash does. Prints the time it saw the crash.
CRASH_THEN_EXIT = """
import os, signal, sys, time
from pathlib import Path
import psycopg
from embedkeeper.store.db import start_embedded
url = start_embedded(Path(sys.argv[1]))
conn = psycopg.connect(url, autocommit=True)
conn.execute("CREATE TABLE kept (x int)")
conn.execute("INSERT INTO kept VALUES (1)")
os.kill(conn.execute("SELECT pg_backend_pid()").fetchone()[0], signal.SIGSEGV)
try:
    conn.execute("SELECT 1")
except psycopg.OperationalError:
    print(time.time(), flush=True)
    sys.exit(3)
"""

READ_BACK = """
import json, sys
from pathlib import Path
import psycopg
from embedkeeper.store.db import start_embedded
with psycopg.connect(start_embedded(Path(sys.argv[1]))) as conn:
    print(json.dumps(conn.execute("SELECT x FROM kept").fetchall()))
"""

STOP_BOUND_S = 10.0


def test_exit_after_a_crashed_backend_stops_the_server_within_seconds_and_loses_nothing(
    tmp_path: Path,
):
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_THEN_EXIT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    exited_at = time.time()
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    stop_s = exited_at - float(crashed.stdout)
    assert stop_s < STOP_BOUND_S, f"the exit after the crash took {stop_s:.1f} s"
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()

    again = subprocess.run(
        [sys.executable, "-c", READ_BACK, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout) == [[1]]
