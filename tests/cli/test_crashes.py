"""A document that kills the process: charged one attempt per crash, then in review, and every
other document embedded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import insert_docs
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
        "SELECT document_id, attempts, status, error_class FROM embedkeeper.failures"
    ).fetchall()
    assert failures == [(13, 2, "review", "Crashed")]
    embedded = conn.execute("SELECT count(*) FROM embedkeeper.embeddings").fetchone()
    assert embedded == (29,)
    assert conn.execute("SELECT count(*) FROM embedkeeper.inflight").fetchone() == (0,)
    check_invariants(conn)
