"""`embedkeeper backfill` against the Ollama stand-in: a url and a model name are all it needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import insert_docs
from tests.standin import StandIn


@pytest.fixture
def server(minilm) -> Iterator[StandIn]:
    standin = StandIn(minilm.model)
    yield standin
    standin.stop()


def test_backfill_with_ollama_needs_only_url_and_model(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(12)])
    cli.configure(
        models=[
            {"name": "nomic", "backend": "ollama", "model": "nomic-embed-text", "url": server.url}
        ]
    )

    result = cli("backfill")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nomic: 12 embedded, 0 failed")
    row = conn.execute(
        "SELECT count(*), min(vector_dims(embedding)) FROM embedkeeper.embeddings"
        " WHERE model = 'nomic'"
    ).fetchone()
    assert row == (12, 384)
    assert {body["model"] for body in server.calls.bodies} == {"nomic-embed-text"}


def test_an_unreachable_server_exits_1_naming_it(cli, conn):
    insert_docs(conn, ["text"])
    cli.configure(
        models=[{"name": "nomic", "backend": "ollama", "model": "m", "url": "http://127.0.0.1:1"}]
    )
    result = cli("backfill")
    assert result.returncode == 1
    assert "cannot reach ollama at http://127.0.0.1:1/api/embed" in result.stderr
    assert conn.execute("SELECT count(*) FROM embedkeeper.embeddings").fetchone() == (0,)
