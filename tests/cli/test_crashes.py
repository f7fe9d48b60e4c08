"""A document that kills the process: charged one attempt per crash, then in review, and every
other document embedded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import insert_docs
from tests.db.test_reuse import paragraphs
from tests.fakes import unit_vector
from tests.invariants import check_invariants

pytestmark = pytest.mark.chaos


def test_a_document_that_kills_the_process_ends_in_review(cli, conn):
    texts = [f"harmless text {i}" for i in range(30)]
    texts[12] = "this one is a KILLER"
    insert_docs(conn, texts)
    cli.configure(model={"claim_size": 8})  # max_attempts = 2 in the test config

    codes = []
    for _ in range(6):  # each run is a restart after a crash, as systemd would do
        run = subprocess.run(
            [sys.executable, "-m", "tests.crashing_cli", "backfill", "--config", str(cli.config)],
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        codes.append(run.returncode)
        if run.returncode in (0, 3):
            break

    assert codes == [137, 137, 3], codes  # crash, crash (the culprit alone), then review
    failures = conn.execute(
        "SELECT document_id, attempts, status, error_class FROM embedkeeper.docs__minilm_failures"
    ).fetchall()
    assert failures == [(13, 2, "review", "Crashed")]
    embedded = conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_documents").fetchone()
    assert embedded == (29,)
    assert conn.execute("SELECT count(*) FROM embedkeeper.inflight").fetchone() == (0,)
    check_invariants(conn)


@pytest.mark.parametrize("point", ["after_claim", "while_embedding", "after_write"])
def test_kill_9_at_each_point_of_a_batch_then_a_restart_finishes(cli, conn, point):
    insert_docs(conn, [f"plain text {i}" for i in range(40)])
    cli.configure(model={"claim_size": 10})
    command = [sys.executable, "-m", "tests.crashing_cli", "backfill", "--config", str(cli.config)]

    crashed = subprocess.run(
        command, env={**cli.env, "EK_CRASH_AT": point}, capture_output=True, text=True, timeout=120
    )
    written = conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_documents").fetchone()[0]
    restart = subprocess.run(command, env=cli.env, capture_output=True, text=True, timeout=120)

    assert crashed.returncode == 137
    assert written == (10 if point == "after_write" else 0)
    assert restart.returncode == 0, restart.stderr
    assert restart.stdout.startswith(f"minilm: {40 - written} embedded, 0 failed")
    assert conn.execute("SELECT count(*) FROM embedkeeper.inflight").fetchone() == (0,)
    # the dead batch was charged once ('Crashed') and then embedded alone: no failure remains
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_failures").fetchone() == (0,)
    check_invariants(conn)


@pytest.mark.parametrize("point", ["after_claim", "while_embedding", "after_write"])
def test_kill_9_in_a_reusing_pass_loses_nothing_and_keeps_every_vector_true(cli, conn, point):
    """Documents of three chunks each, embedded, then edited (a sentence appended): the pass
    that keeps their unchanged chunks' vectors is killed at each point of its first batch; a
    restart finishes, and every chunk's vector is the one its passage gets (ScriptedBackend's
    vector of the text), kept or new."""
    parts = paragraphs(60)
    texts = ["\n\n".join(parts[i : i + 3]) for i in range(0, 60, 3)]
    insert_docs(conn, texts)
    cli.configure(model={"claim_size": 5})
    command = [sys.executable, "-m", "tests.crashing_cli", "backfill", "--config", str(cli.config)]
    first = subprocess.run(command, env=cli.env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    conn.execute("UPDATE public.docs SET body = body || E'\\n\\nA paragraph appended. Short.'")

    crashed = subprocess.run(
        command, env={**cli.env, "EK_CRASH_AT": point}, capture_output=True, text=True, timeout=120
    )
    restart = subprocess.run(command, env=cli.env, capture_output=True, text=True, timeout=120)

    assert crashed.returncode == 137
    assert restart.returncode == 0, restart.stderr
    reused = conn.execute(
        "SELECT sum(chunks_reused), sum(chunks_embedded) FROM embedkeeper.runs"
        " WHERE trigger = 'backfill' AND id > (SELECT min(id) FROM embedkeeper.runs)"
    ).fetchone()
    # Three chunks a document (each paragraph its own; the appended sentence joins the last):
    # the documents written after the kill kept their first two.
    assert reused[0] >= 2 * (20 - 5)
    check_invariants(conn)
    rows = conn.execute("SELECT passage, embedding FROM embedkeeper.docs__minilm_chunks").fetchall()
    assert len(rows) == 3 * 20
    for passage, embedding in rows:
        expected = unit_vector(passage, 384)
        assert float(embedding.to_numpy() @ expected) > 0.9999
