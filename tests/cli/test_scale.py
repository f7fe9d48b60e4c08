"""Scale-out: four instances on one database share 10,000 documents without a coordinator."""

from __future__ import annotations

import pytest

from tests.invariants import check_invariants

pytestmark = pytest.mark.chaos


def test_four_instances_embed_10000_documents_each_exactly_once(cli, conn):
    conn.execute(
        "INSERT INTO docs (id, body) SELECT g, 'document ' || g FROM generate_series(1, 10000) g"
    )
    cli.configure(
        models=[{"name": "minilm", "backend": "null", "dimensions": 384, "claim_size": 200}]
    )

    children = [cli.start("backfill") for _ in range(4)]
    codes = [child.wait(300) for child in children]

    errors = [child.output()[1] for child in children]
    assert codes == [0, 0, 0, 0], errors
    for stderr in errors:
        assert "deadlock" not in stderr.lower()
        assert "serializ" not in stderr.lower()
        assert "Traceback" not in stderr
    row = conn.execute(
        "SELECT count(*), count(DISTINCT document_id) FROM embedkeeper.docs__minilm_documents"
    ).fetchone()
    assert row == (10000, 10000)
    ok = conn.execute(
        "SELECT sum(docs_ok), count(DISTINCT pid), bool_and(status = 'ok') FROM embedkeeper.runs"
    ).fetchone()
    assert ok == (10000, 4, True)  # no document embedded twice, and every instance took part
    # An instance whose pass met documents a peer held waited for them and ran its pass again
    # (sync/held.py), so each one's exit 0 vouches for the whole table.
    for child in children:
        assert "100.00%" in child.output()[0]
    shares = [r[0] for r in conn.execute("SELECT docs_ok FROM embedkeeper.runs")]
    assert sum(1 for share in shares if share > 0) >= 2
    check_invariants(conn)
