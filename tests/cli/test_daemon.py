"""`embedkeeper run`, the daemon, as systemd runs it: READY=1 once the model is loaded, passes on
the schedule that follow inserts, deletes and edits, and STOPPING=1 then exit 0 on SIGTERM, even
in the middle of a long pass."""

from __future__ import annotations

import hashlib
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli.helpers import (
    Child,
    advisory_locks,
    count_rows,
    mismatched_vectors,
    paragraphs,
    scalar,
    wait_for,
)
from tests.conftest import insert_docs, vectors

PASS_TIMEOUT_S = 60  # generous: a pass comes every 2 s


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A stand-in for systemd's notify socket. The path is short: AF_UNIX paths are capped at
    108 bytes, which pytest's tmp_path can exceed."""
    directory = tempfile.mkdtemp(prefix="ek-")
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    shutil.rmtree(directory)


def next_notification(sock: socket.socket, child: Child, timeout_s: float) -> str:
    """The next datagram the daemon sends; fails early if the daemon exits instead."""
    deadline = time.monotonic() + timeout_s
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            return sock.recv(4096).decode()
        except TimeoutError:
            if child.poll() is not None:
                raise AssertionError(
                    f"daemon exited {child.poll()}:\n{child.output()[1]}"
                ) from None
    raise AssertionError(f"no notification within {timeout_s} s:\n{child.output()[1]}")


def content_hash(conn: psycopg.Connection[Any], doc_id: int) -> bytes | None:
    if count_rows(conn, "embeddings") == 0:
        return None  # no record yet (perhaps not even the pair's tables)
    row = conn.execute(
        "SELECT content_hash FROM embedkeeper.docs__minilm_documents WHERE document_id = %s",
        (doc_id,),
    ).fetchone()
    return bytes(row[0]) if row else None


def test_daemon_notifies_systemd_follows_changes_and_stops_on_sigterm(cli, conn, notify_socket):
    sock, path = notify_socket
    ids = insert_docs(conn, [f"Daemon document {i} about write-ahead logging." for i in range(20)])
    child = cli.start("run", NOTIFY_SOCKET=path)

    assert next_notification(sock, child, 90) == "READY=1"
    wait_for(lambda: len(vectors(conn)) == 20, PASS_TIMEOUT_S, "the first pass", alive=child)
    untouched_at = scalar(
        conn, "SELECT embedded_at FROM embedkeeper.docs__minilm_documents WHERE document_id = 1"
    )

    insert_docs(conn, ["A document inserted while the daemon runs."], start=21)
    wait_for(lambda: content_hash(conn, 21), PASS_TIMEOUT_S, "doc 21's vector", alive=child)

    conn.execute("DELETE FROM public.docs WHERE id = 5")
    wait_for(
        lambda: content_hash(conn, 5) is None, PASS_TIMEOUT_S, "doc 5's vector to go", alive=child
    )

    new_body = "An edited body: checkpoints flush dirty buffers."
    conn.execute("UPDATE public.docs SET body = %s, updated_at = now() WHERE id = 7", (new_body,))
    new_hash = hashlib.md5(new_body.encode()).digest()
    wait_for(
        lambda: content_hash(conn, 7) == new_hash, PASS_TIMEOUT_S, "doc 7 re-embedded", alive=child
    )

    # systemd stops the service in the middle of a long pass: the batch in flight is finished or
    # released, the run is recorded, and the process exits 0.
    insert_docs(conn, paragraphs(600, sentences=2), start=100)
    wait_for(lambda: content_hash(conn, 100), PASS_TIMEOUT_S, "the long pass to start", alive=child)
    child.process.send_signal(signal.SIGTERM)
    assert next_notification(sock, child, 30) == "STOPPING=1"
    code = child.wait(30)
    _, stderr = child.output()

    assert code == 0, stderr
    stored = set(vectors(conn))
    assert {*(i for i in ids if i != 5), 21} < stored
    assert 0 < len(stored - {*ids, 21}) < 600
    assert mismatched_vectors(conn) == []
    assert untouched_at == scalar(
        conn, "SELECT embedded_at FROM embedkeeper.docs__minilm_documents WHERE document_id = 1"
    )
    assert advisory_locks(conn) == []
    for event in ("daemon_ready models=minilm", "stopping signal=SIGTERM", "daemon_stopped"):
        assert event in stderr
    # Each pass is logged when it starts and by how it ended; the cut one is not "done".
    ends = stderr.count("pass_done") + stderr.count("pass_interrupted")
    assert stderr.count("pass_start") == ends
    interrupted_runs = "SELECT count(*) FROM embedkeeper.runs WHERE status = 'interrupted'"
    assert stderr.count("pass_interrupted") == scalar(conn, interrupted_runs) == 1
    assert stderr.count("model_loaded") == 1
    assert "Traceback" not in stderr
    runs = conn.execute(
        "SELECT trigger, status, finished_at IS NOT NULL FROM embedkeeper.runs"
    ).fetchall()
    assert {trigger for trigger, _, _ in runs} == {"schedule", "sweep"}
    assert all(finished for _, _, finished in runs)
    assert {status for _, status, _ in runs} == {"ok", "interrupted"}  # SIGTERM cut the last pass
    assert scalar(conn, "SELECT sum(docs_deleted) FROM embedkeeper.runs") == 1
    assert scalar(conn, "SELECT sum(docs_ok) FROM embedkeeper.runs") == len(stored) + 2


def test_run_once_does_one_scheduled_pass_and_exits(cli, conn):
    insert_docs(conn, [f"document {i}" for i in range(1, 31)])
    conn.execute("UPDATE docs SET updated_at = now() - interval '1 day'")
    cli.configure(
        source={"updated_at_column": "updated_at"},
        model={"backend": "null", "name": "null", "dimensions": 384},
    )

    first = cli("run", "--once")
    assert first.returncode == 0, first.stderr
    assert len(vectors(conn, "null")) == 30
    conn.execute("UPDATE docs SET body = 'edited', updated_at = now() WHERE id = 7")
    second = cli("run", "--once")

    assert second.returncode == 0, second.stderr
    runs = conn.execute(
        "SELECT trigger, docs_ok, status FROM embedkeeper.runs ORDER BY id"
    ).fetchall()
    # The first tick sweeps too (no sweep on record); the second finds the one edit.
    assert runs == [("schedule", 30, "ok"), ("sweep", 0, "ok"), ("schedule", 1, "ok")]
    stored = conn.execute(
        "SELECT e.content_hash = decode(md5(d.body), 'hex')"
        " FROM embedkeeper.docs__null_documents e"
        " JOIN docs d ON d.id = e.document_id WHERE d.id = 7"
    ).fetchone()
    assert stored == (True,)


def test_run_once_exits_1_when_its_pass_fails(cli, conn):
    insert_docs(conn, ["document"])
    cli.configure(
        model={
            "backend": "ollama",
            "name": "remote",
            "dimensions": 384,
            "url": "http://127.0.0.1:9",
        }
    )

    result = cli("run", "--once")

    assert result.returncode == 1
    assert vectors(conn, "remote") == {}
