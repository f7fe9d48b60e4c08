"""A backfill killed or stopped mid-run, and two backfills at once: claims die with the session,
so a rerun or a peer picks the work up at once, and no document ever gets two vectors."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import pytest

from tests.cli.helpers import (
    advisory_locks,
    count_rows,
    mismatched_vectors,
    paragraphs,
    scalar,
    wait_for,
)
from tests.conftest import insert_docs
from tests.invariants import check_invariants

MODEL_LOAD_AND_FIRST_BATCH_S = 120


def vector_counts(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    if conn.execute("SELECT to_regclass('embedkeeper.docs__minilm_documents')").fetchone() == (
        None,
    ):
        return 0, 0  # the pass has not made its tables yet
    row = conn.execute(
        "SELECT count(*), count(DISTINCT document_id) FROM embedkeeper.docs__minilm_documents"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def some_but_not_all(conn: psycopg.Connection[Any], total: int) -> int:
    count = count_rows(conn, "embeddings")
    return count if 0 < count < total else 0


pytestmark = pytest.mark.chaos


def test_kill_9_mid_backfill_then_an_immediate_rerun_embeds_each_document_once(cli, conn):
    insert_docs(conn, paragraphs(600, sentences=2))
    child = cli.start("backfill")

    seen = wait_for(
        lambda: some_but_not_all(conn, 600),
        MODEL_LOAD_AND_FIRST_BATCH_S,
        "the first vectors",
        alive=child,
    )
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL
    left_behind = count_rows(conn, "embeddings")
    rerun = cli("backfill", timeout=180)

    assert 0 < seen <= left_behind < 600
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith(f"minilm: {600 - left_behind} embedded, 0 failed")
    assert vector_counts(conn) == (600, 600)
    assert mismatched_vectors(conn) == []
    assert advisory_locks(conn) == []
    assert count_rows(conn, "failures") == 0
    # The rerun's run row counts only its own work.
    runs = conn.execute(
        "SELECT status, docs_ok FROM embedkeeper.runs ORDER BY started_at"
    ).fetchall()
    assert len(runs) == 2
    assert runs[0][0] == "abandoned"  # the killed run's session is gone: closed by the rerun
    assert runs[-1] == ("ok", 600 - left_behind)
    check_invariants(conn)


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_mid_backfill_exits_128_plus_it_and_a_rerun_finishes(cli, conn, signum, code):
    """128 + the signal: a script or systemd tells "stopped" (rerun to go on) from "broken" (1)."""
    insert_docs(conn, paragraphs(600, sentences=2))
    child = cli.start("backfill")

    wait_for(
        lambda: some_but_not_all(conn, 600),
        MODEL_LOAD_AND_FIRST_BATCH_S,
        "the first vectors",
        alive=child,
    )
    child.process.send_signal(signum)
    exit_code = child.wait(30)
    stdout, stderr = child.output()

    assert exit_code == code, stderr
    assert f"stopping signal={signal.Signals(signum).name}" in stderr
    assert "interrupted: the batch in flight was finished or released" in stderr
    assert "Traceback" not in stderr
    stopped_at = count_rows(conn, "embeddings")
    assert 0 < stopped_at < 600
    assert stdout.startswith(f"minilm: {stopped_at} embedded, 0 failed")
    assert advisory_locks(conn) == []
    assert mismatched_vectors(conn) == []
    assert scalar(conn, "SELECT count(*) FROM embedkeeper.runs WHERE finished_at IS NULL") == 0
    assert scalar(conn, "SELECT status FROM embedkeeper.runs") == "interrupted"

    rerun = cli("backfill", timeout=180)

    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith(f"minilm: {600 - stopped_at} embedded, 0 failed")
    assert vector_counts(conn) == (600, 600)
    assert mismatched_vectors(conn) == []
    assert advisory_locks(conn) == []
    check_invariants(conn)


def test_two_concurrent_backfills_embed_each_document_once(cli, conn):
    insert_docs(conn, paragraphs(400, sentences=2))

    first, second = cli.start("backfill"), cli.start("backfill")
    codes = [first.wait(240), second.wait(240)]

    assert codes == [0, 0], [first.output()[1], second.output()[1]]
    # Exit 0 means done for each of them: one that met documents the other held waited for
    # them (sync/held.py) instead of reporting them pending.
    for child in (first, second):
        assert "100.00%" in child.output()[0], child.output()
    assert vector_counts(conn) == (400, 400)
    assert mismatched_vectors(conn) == []
    assert advisory_locks(conn) == []
    assert count_rows(conn, "failures") == 0
    runs = conn.execute("SELECT status, docs_ok, pid FROM embedkeeper.runs").fetchall()
    assert {status for status, _, _ in runs} == {"ok"}
    assert {pid for _, _, pid in runs} <= {first.pid, second.pid}
    assert sum(docs_ok for _, docs_ok, _ in runs) == 400
    check_invariants(conn)
