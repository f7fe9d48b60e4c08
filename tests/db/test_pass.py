"""One pass on the real database with the real model: what ends up in embedkeeper.embeddings."""

from __future__ import annotations

import threading

import numpy as np

from embedkeeper.commands.backfill import backfill
from embedkeeper.sync.passes import PassContext, run_pass
from embedkeeper.sync.plan import PassOptions
from tests.conftest import insert_docs, source_config, vectors


def test_backfill_embeds_every_document_equal_to_a_direct_encode(conn, db_url, make_app, minilm):
    texts = [
        "PostgreSQL stores rows in heap pages.",
        "Vectors live in pgvector.",
        "naïve café ☕ 東京",
    ]
    ids = insert_docs(conn, texts)
    app = make_app(source_config(db_url))

    result = backfill(app, app.config.models)

    stored = vectors(conn)
    assert sorted(stored) == ids
    direct = minilm.model.encode(texts, normalize_embeddings=True)
    for doc_id, expected in zip(ids, direct, strict=True):
        got = stored[doc_id]
        assert got.shape == (384,)
        assert abs(np.linalg.norm(got) - 1.0) < 1e-4
        assert float(np.dot(got, expected) / np.linalg.norm(expected)) >= 0.999
    assert result.exit_code == 0
    assert result.coverage[0].coverage_percent == 100.0


def test_nothing_pending_after_a_pass_finds_nothing(conn, db_url, make_app, backend):
    insert_docs(conn, ["one", "two"])
    app = make_app(source_config(db_url))
    backfill(app, app.config.models)
    backend.calls.clear()

    hash_check = PassOptions(
        trigger="schedule", stale_by="hash", retry_failed_now=False, changes_only=False
    )
    second = run_pass(
        PassContext(app, app.pair(app.config.models[0]), backend, hash_check, threading.Event())
    )

    assert backend.calls == []
    assert second.stats.ok == 0
