"""Issue 24 against the stand-in server: a chunk the server refuses fails its document (with
the server's words), and each good chunk of the batch reaches the server at most twice in an
attempt: in the refused request, then once alone (halving sent some five times a request of 8)."""

from __future__ import annotations

from collections import Counter

from tests.conftest import insert_docs, vectors
from tests.db.test_http_backends import http_config, run_backfill, server

__all__ = ["server"]  # the fixture, shared with test_http_backends


def text(document: int, poison_at: int | None = None) -> str:
    words = ["POISONS" if i == poison_at else "vectors" for i in range(12)]
    return " ".join(f"Document {document} sentence {i:02} about {w}." for i, w in enumerate(words))


def test_each_good_chunk_is_sent_at_most_twice_and_a_refused_chunk_fails_its_document(
    conn, db_url, server
):
    texts = [text(1, poison_at=3), text(2), text(3, poison_at=8)]
    ids = insert_docs(conn, texts)
    server.faults.poison = "POISONS"
    config = http_config(
        db_url,
        server,
        "ollama",
        batch_size=8,
        concurrency=1,
        chunk_tokens=40,
        retry={"max_attempts": 1},  # one attempt: the counts below are per attempt
    )

    result = run_backfill(config)

    assert result.exit_code == 3
    failed = conn.execute(
        "SELECT document_id, error_class, message FROM embedkeeper.docs__remote_failures ORDER BY 1"
    ).fetchall()
    assert [(row[0], row[1]) for row in failed] == [
        (ids[0], "InputRejected"),
        (ids[2], "InputRejected"),
    ]
    for _, _, message in failed:  # the real refusal, not a chunk skipped after it
        assert message.startswith("chunk ")
        assert message.endswith("input length exceeds maximum context length")
    assert sorted(vectors(conn, "remote")) == [ids[1]]

    sent = Counter(t for request in server.calls.inputs for t in request)
    chunks = [t for t in sent if t.startswith("Document")]
    poison = [t for t in chunks if "POISONS" in t]
    good = [t for t in chunks if "POISONS" not in t]
    assert len(poison) == 2
    assert len(good) >= 6
    assert {sent[t] for t in poison} == {2}  # in a request of several, then alone
    assert max(sent[t] for t in good) == 2
    # The chunks of documents 1 and 3 alone after their refused chunk were not sent again.
    assert any(sent[t] == 1 for t in good if not t.startswith("Document 2 "))
