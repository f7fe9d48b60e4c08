"""A `backfill` whose documents another process holds: it waits for them (`waiting_for_held`) and
exits 0 only once they are embedded; held past `[database] claim_lease`, it exits 4 and says so.
The other process is a session holding those documents' claims, as a peer instance's does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from embedkeeper.store.db import connect
from tests.cli.helpers import wait_for
from tests.conftest import insert_docs

HELD = [3, 4, 5, 6, 7]
NULL_MODEL = {"backend": "null", "name": "null", "dimensions": 384}


@pytest.fixture
def peer(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_url) as session:
        session.execute(
            "SELECT pg_advisory_lock(hashtext('embedkeeper:docs:null'), hashtext(x::text))"
            " FROM unnest(%s::bigint[]) AS x",
            (HELD,),
        )
        yield session


def embedded(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM embedkeeper.docs__null_documents").fetchone()
    return int(row[0]) if row else -1


def test_backfill_waits_for_held_documents_and_exits_0_once_all_are_embedded(cli, conn, peer):
    insert_docs(conn, [f"document {i}" for i in range(1, 21)])
    cli.configure(model=NULL_MODEL)
    child = cli.start("backfill")

    wait_for(lambda: "waiting_for_held" in child.output()[1], 60, "the wait", alive=child)
    assert embedded(conn) == 15
    peer.execute("SELECT pg_advisory_unlock_all()")  # the peer stops, its batch unfinished
    code = child.wait(30)
    stdout, stderr = child.output()

    assert code == 0, stderr
    assert "waiting_for_held model=null documents=5 timeout_s=600" in stderr
    assert "held_released model=null" in stderr
    assert embedded(conn) == 20
    assert stdout.startswith("null: 20 embedded, 0 failed")
    assert "100.00%" in stdout


def test_backfill_exits_4_when_documents_stay_held_past_claim_lease(cli, conn, peer):
    insert_docs(conn, [f"document {i}" for i in range(1, 21)])
    cli.configure(model=NULL_MODEL, database={"claim_lease": "2s"})

    result = cli("backfill")

    assert result.returncode == 4, result.stderr
    assert "held_timeout model=null documents=5" in result.stderr
    assert (
        "documents still held by another process after [database] claim_lease: 5 of null;"
        " run `embedkeeper backfill` again once it has finished"
    ) in result.stderr
    assert embedded(conn) == 15
    assert "Traceback" not in result.stderr
