"""Ollama and OpenAI-compatible backends against a stand-in server that speaks their exact JSON,
computes real vectors with MiniLM, and misbehaves on demand."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedkeeper.app import open_app
from embedkeeper.commands.backfill import backfill
from embedkeeper.config import Config, parse_config
from embedkeeper.errors import BackendError, BackendUnavailable, ConfigError, DimensionMismatch
from tests.conftest import insert_docs, vectors
from tests.standin import StandIn

BACKENDS = ["ollama", "openai"]
KEY = "sk-S3ntinelKey"


@pytest.fixture
def server(minilm) -> Iterator[StandIn]:
    standin = StandIn(minilm.model)
    yield standin
    standin.stop()


def http_config(
    db_url: str, server: StandIn, backend: str, retry: dict[str, Any] | None = None, **model: Any
) -> Config:
    entry: dict[str, Any] = {
        "name": "remote",
        "backend": backend,
        "model": "all-minilm",
        "url": server.url,
        "batch_size": 4,
        "claim_size": 16,
        "concurrency": 2,
        "timeout": "5s",
        **model,
    }
    document = {
        "source": {"table": "public.docs"},
        "models": [entry],
        "retry": {
            "max_attempts": 2,
            "transient_attempts": 3,
            "transient_backoff_max": "200ms",
            **(retry or {}),
        },
    }
    env = {"EMBEDKEEPER_DATABASE_URL": db_url, "EK_TEST_KEY": KEY}
    return parse_config(document, env, path=Path("test.toml"))


def run_backfill(config: Config, server: StandIn | None = None, **faults: Any):
    """Backfill; `faults` are set on the server after the start-up probe has got through."""
    app = open_app(config)
    try:
        if faults:
            app.backend(config.models[0])
            assert server is not None
            for name, value in faults.items():
                setattr(server.faults, name, value)
        return backfill(app, config.models)
    finally:
        app.close()


def failures(conn):
    return conn.execute(
        "SELECT document_id, status, error_class FROM embedkeeper.docs__remote_failures ORDER BY 1"
    ).fetchall()


def assert_equal_to_local_model(conn, minilm, ids, texts):
    stored = vectors(conn, "remote")
    assert sorted(stored) == sorted(ids)
    direct = minilm.model.encode(texts, normalize_embeddings=True)
    for doc_id, expected in zip(ids, direct, strict=True):
        assert stored[doc_id].shape == (384,)
        assert float(np.dot(stored[doc_id], expected)) >= 0.999


TEXTS = [f"Paragraph {i} about PostgreSQL, vectors and embeddings number {i}." for i in range(20)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_document_is_embedded_once_equal_to_the_local_model(
    backend, conn, db_url, server, minilm
):
    ids = insert_docs(conn, TEXTS)

    result = run_backfill(http_config(db_url, server, backend, api_key_env="EK_TEST_KEY"))

    assert result.exit_code == 0
    assert_equal_to_local_model(conn, minilm, ids, TEXTS)
    embedded = [t for batch in server.calls.inputs[1:] for t in batch]  # [0] is the probe
    assert sorted(embedded) == sorted(TEXTS)  # each document sent exactly once
    assert max(len(batch) for batch in server.calls.inputs) == 4  # batch_size per request
    assert set(server.calls.authorization) == {f"Bearer {KEY}"}
    tokens = conn.execute("SELECT sum(tokens) FROM embedkeeper.runs").fetchone()[0]
    assert tokens > 0  # the server's usage, recorded in the run


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.chaos
def test_an_outage_charges_nobody_and_the_calls_stay_bounded(backend, conn, db_url, server, minilm):
    ids = insert_docs(conn, TEXTS)
    # six failed answers over two requests in flight: within one budget of 8 tries a request
    config = http_config(db_url, server, backend, retry={"transient_attempts": 8})
    result = run_backfill(
        config, server, unavailable_first=4, rate_limited_first=2, retry_after="0"
    )

    assert result.exit_code == 0
    assert failures(conn) == []
    assert_equal_to_local_model(conn, minilm, ids, TEXTS)
    faults = 6
    assert server.calls.requests - 1 <= len(TEXTS) * (1 + faults)
    assert server.calls.requests - 1 <= math.ceil(len(TEXTS) / 4) + faults


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_poison_document_alone_ends_in_review(backend, conn, db_url, server, minilm):
    texts = list(TEXTS)
    texts[5] = "POISON " * 3
    ids = insert_docs(conn, texts)
    server.faults.poison = "POISON"

    result = run_backfill(http_config(db_url, server, backend))

    assert result.exit_code == 3
    assert failures(conn) == [(6, "review", "InputRejected")]
    good = [i for i in ids if i != 6]
    assert_equal_to_local_model(conn, minilm, good, [t for t in texts if "POISON" not in t])
    message = conn.execute("SELECT message FROM embedkeeper.docs__remote_failures").fetchone()[0]
    assert "maximum context length" in message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", ["wrong_dims", "nan"])
def test_a_bad_vector_is_that_documents_failure(backend, fault, conn, db_url, server):
    texts = list(TEXTS[:6])
    texts[2] = "BADVECTOR here"
    insert_docs(conn, texts)
    setattr(server.faults, fault, "BADVECTOR")

    run_backfill(http_config(db_url, server, backend))

    assert failures(conn) == [(3, "review", "InvalidVector")]
    assert sorted(vectors(conn, "remote")) == [1, 2, 4, 5, 6]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.chaos
def test_fewer_vectors_than_inputs_is_an_outage_not_a_documents_fault(
    backend, conn, db_url, server
):
    insert_docs(conn, TEXTS[:8])
    config = http_config(db_url, server, backend)
    result = run_backfill(config, server, drop_one_first=1)
    assert failures(conn) == []
    assert len(vectors(conn, "remote")) == 8
    assert result.exit_code == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.chaos
def test_a_hung_response_times_out_and_is_retried(backend, conn, db_url, server):
    insert_docs(conn, TEXTS[:4])
    config = http_config(db_url, server, backend, timeout="1s")
    result = run_backfill(config, server, hang_first=1, hang_s=3.0)
    assert result.exit_code == 0
    assert failures(conn) == []
    assert len(vectors(conn, "remote")) == 4


@pytest.mark.chaos
def test_a_dead_server_fails_the_backfill_and_charges_nobody(conn, db_url, server):
    insert_docs(conn, TEXTS[:4])
    config = http_config(db_url, server, "ollama")
    app = open_app(config)
    app.backend(config.models[0])
    server.faults.unavailable_first = 1000
    try:
        with pytest.raises(BackendUnavailable, match=r"HTTP 503: model is loading"):
            backfill(app, config.models)
    finally:
        app.close()
    assert failures(conn) == []
    assert vectors(conn, "remote") == {}
    # One budget: transient_attempts (3) tries of the one request, not 3 passes of 3 tries each
    assert server.calls.requests - 1 <= 3


def test_an_unreachable_server_at_start_is_a_clear_error(db_url):
    config = parse_config(
        {
            "source": {"table": "public.docs"},
            "models": [
                {"name": "remote", "backend": "ollama", "model": "m", "url": "http://127.0.0.1:1"}
            ],
            "retry": {"transient_attempts": 2, "transient_backoff_max": "100ms"},
        },
        {"EMBEDKEEPER_DATABASE_URL": db_url},
        path=Path("test.toml"),
    )
    app = open_app(config)
    with pytest.raises(
        BackendUnavailable, match=r"cannot reach ollama at http://127.0.0.1:1/api/embed"
    ):
        app.backend(config.models[0])


def test_dimensions_that_do_not_match_the_server_are_refused(conn, db_url, server):
    config = http_config(db_url, server, "openai", dimensions=768)
    app = open_app(config)
    with pytest.raises(DimensionMismatch, match="makes 384-d vectors; set dimensions = 384"):
        app.backend(config.models[0])
    app.close()


def test_redirects_are_not_followed(conn, db_url, server):
    server.faults.redirect = True
    config = http_config(db_url, server, "ollama")
    with pytest.raises(BackendError, match="redirects are not followed"):
        open_app(config).backend(config.models[0])
    assert len(server.calls.bodies) == 1  # nothing went to the redirect's target


def test_an_oversized_response_is_refused(conn, db_url, server):
    insert_docs(conn, TEXTS[:4])
    config = http_config(db_url, server, "openai")
    result = run_backfill(config, server, huge_first=1)
    assert result.exit_code == 0
    assert failures(conn) == []


def test_openai_base64_and_requested_dimensions(conn, db_url, server, minilm):
    ids = insert_docs(conn, TEXTS[:5])
    config = http_config(
        db_url,
        server,
        "openai",
        encoding_format="base64",
        dimensions=384,
        request_dimensions=True,
        url=server.url + "/v1",
    )
    run_backfill(config)
    assert_equal_to_local_model(conn, minilm, ids, TEXTS[:5])
    assert server.calls.bodies[-1]["dimensions"] == 384
    assert server.calls.bodies[-1]["encoding_format"] == "base64"


def test_ollama_options_reach_the_server(conn, db_url, server):
    insert_docs(conn, TEXTS[:1])
    config = http_config(
        db_url, server, "ollama", keep_alive="10m", options={"num_ctx": 512}, truncate=False
    )
    run_backfill(config)
    body = server.calls.bodies[-1]
    assert (body["keep_alive"], body["options"], body["truncate"]) == (
        "10m",
        {"num_ctx": 512},
        False,
    )


def test_the_api_key_is_never_logged(conn, db_url, server, caplog):
    insert_docs(conn, TEXTS[:3])
    server.faults.poison = "Paragraph 1 "
    with caplog.at_level(logging.DEBUG):
        run_backfill(http_config(db_url, server, "openai", api_key_env="EK_TEST_KEY"))
    assert server.calls.authorization[-1] == f"Bearer {KEY}"
    assert KEY not in caplog.text
    assert KEY not in repr(http_config(db_url, server, "openai", api_key_env="EK_TEST_KEY"))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "ftp://host"}, "http:// or https://"),
        ({"url": "http://user:pw@host"}, "must not hold credentials"),
        ({"device": "cuda"}, 'device applies to backend sentence-transformers, not "ollama"'),
        ({"api_key_env": "EK_NOT_SET"}, "EK_NOT_SET, which is not set"),
        ({"encoding_format": "base64"}, 'encoding_format applies to backend openai, not "ollama"'),
        ({"max_tokens": 256}, "max_tokens needs tokenizer"),
        ({"backend": "sentence-transformers", "tokenizer": "x"}, "tokenizer applies to backend"),
    ],
)
def test_http_config_errors(entry, message):
    document = {
        "source": {"table": "docs"},
        "models": [{"name": "m", "backend": "ollama", "model": "x", **entry}],
    }
    with pytest.raises(ConfigError, match=message):
        parse_config(document, {}, path=Path("t.toml"))


def test_ollama_needs_nothing_but_its_url_and_model_name(conn, db_url, server, minilm):
    ids = insert_docs(conn, TEXTS[:3])
    config = parse_config(
        {
            "source": {"table": "public.docs"},
            "models": [
                {"name": "remote", "backend": "ollama", "model": "all-minilm", "url": server.url}
            ],
        },
        {"EMBEDKEEPER_DATABASE_URL": db_url},
        path=Path("test.toml"),
    )
    assert run_backfill(config).exit_code == 0
    assert_equal_to_local_model(conn, minilm, ids, TEXTS[:3])
    row = conn.execute("SELECT dimensions FROM embedkeeper.models WHERE name = 'remote'")
    assert row.fetchone() == (384,)


def test_two_workers_against_one_server_send_each_document_once(conn, db_url, server):
    import threading

    texts = [f"shared document {i}" for i in range(60)]
    insert_docs(conn, texts)
    config = http_config(db_url, server, "openai", claim_size=8)
    apps = [open_app(config), open_app(config)]
    for app in apps:
        app.backend(config.models[0])
    threads = [threading.Thread(target=backfill, args=(app, config.models)) for app in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for app in apps:
        app.close()
    sent = [t for batch in server.calls.inputs for t in batch if t.startswith("shared")]
    assert sorted(sent) == sorted(texts)
    assert len(vectors(conn, "remote")) == 60
