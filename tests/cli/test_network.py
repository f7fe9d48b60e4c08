"""The database behind a network that goes down: the daemon waits without a busy loop, says
READY only once the database is usable, and recovers from a cut mid-run."""

from __future__ import annotations

import socket
import time

import pytest

from tests.cli.helpers import count_rows, wait_for
from tests.conftest import database_name, insert_docs
from tests.invariants import check_invariants

pytestmark = pytest.mark.chaos


def test_database_down_at_start_then_up(cli, conn, db_url, proxy, tmp_path):
    insert_docs(conn, [f"text {i}" for i in range(50)])
    cli.configure(models=[{"name": "minilm", "backend": "null", "dimensions": 384}])
    proxy.down()
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        url = proxy.url(database_name(db_url))
        child = cli.start("run", EMBEDKEEPER_DATABASE_URL=url, NOTIFY_SOCKET=path)
        started = time.monotonic()
        wait_for(
            lambda: "database_unavailable attempt=3" in child.output()[1],
            30,
            "three refused attempts",
            alive=child,
        )
        waited = time.monotonic() - started
        attempts = child.output()[1].count("database_unavailable")
        assert attempts <= 2 * waited + 2  # backoff, not a busy loop (each wait >= 0.5 s)
        with pytest.raises(BlockingIOError):
            sock.recv(100)  # not READY while the database is down

        proxy.up()
        sock.setblocking(True)
        sock.settimeout(30)
        assert sock.recv(100) == b"READY=1"
        wait_for(
            lambda: count_rows(conn, "embeddings") == 50,
            30,
            "the documents embedded",
            alive=child,
        )
        proxy.cut()  # a partition mid-run: the next pass reconnects
        insert_docs(conn, ["after the cut"], start=51)
        wait_for(
            lambda: count_rows(conn, "embeddings") == 51,
            30,
            "the document after the cut",
            alive=child,
        )
        child.process.terminate()
        assert child.wait(30) == 0
    check_invariants(conn)
