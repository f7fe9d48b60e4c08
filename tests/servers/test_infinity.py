"""embedkeeper against the real infinity-emb 0.0.78 (its own virtualenv, `make test-servers`),
serving the packaged MiniLM from its directory on loopback, as a user would run it.

Skipped, with the reason, only where infinity-emb is not installed.
"""

from __future__ import annotations

import logging
import re
import signal
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from embedkeeper.backends.local import resolve_model_path
from embedkeeper.chunking import load_tokenizer
from embedkeeper.config.settings import DEFAULT_MODEL_REF
from tests.cli.helpers import assert_one_error_line, count_rows, paragraphs, wait_for
from tests.conftest import insert_docs, vectors
from tests.servers.infinity import Infinity, free_port, infinity_command

log = logging.getLogger(__name__)

WINDOW = 256  # MiniLM's max_seq_length, where sentence-transformers (and infinity) cut


@pytest.fixture(scope="module")
def model_dir() -> str:
    return resolve_model_path(DEFAULT_MODEL_REF)


@pytest.fixture(scope="module")
def infinity(model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infinity]:
    command = infinity_command()
    if command is None:
        pytest.skip(
            "infinity-emb is not installed: `make test-servers` builds .venv-infinity with "
            "torch==2.13.0 and infinity-emb[server,torch]==0.0.78 (or set EMBEDKEEPER_INFINITY)"
        )
    server = Infinity(command, model_dir, tmp_path_factory.mktemp("infinity") / "infinity.log")
    seconds = server.start("minilm")
    log.info("infinity started in %.1f s", seconds)  # pytest -o log_cli=true shows it
    yield server
    server.kill()


def long_texts(count: int) -> list[str]:
    """Documents far past the window: the server cuts them, and we must say so."""
    return [" ".join(paragraphs(12, sentences=4)[i:]) for i in range(count)]


def model_entry(server: Infinity, model_dir: str, **extra: object) -> dict[str, object]:
    return {
        "name": "inf",
        "backend": "openai",
        "model": "minilm",
        "url": server.url + "/embeddings",  # infinity's default path, no /v1
        "tokenizer": model_dir,
        "batch_size": 16,
        "claim_size": 64,
        **extra,
    }


def test_vectors_token_counts_and_truncation_match_the_model(
    cli, conn, infinity, model_dir, minilm
):
    texts = [*paragraphs(40), *long_texts(8)]
    ids = insert_docs(conn, texts)
    entry = model_entry(infinity, model_dir, encoding_format="base64", chunking="none")
    cli.configure(models=[entry])

    result = cli("backfill")

    assert result.returncode == 0, result.stderr
    stored = vectors(conn, "inf")
    assert sorted(stored) == ids
    direct = minilm.model.encode(texts, normalize_embeddings=True)
    cosines = [float(np.dot(stored[i], v)) for i, v in zip(ids, direct, strict=True)]
    assert min(cosines) >= 0.9999

    tokenizer = load_tokenizer(model_dir)
    counts = {i: len(tokenizer.encode(t).ids) for i, t in zip(ids, texts, strict=True)}
    rows = conn.execute(
        "SELECT document_id, token_count, truncated FROM embedkeeper.docs__inf_documents"
    ).fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        i: (min(n, WINDOW), n > WINDOW) for i, n in counts.items()
    }
    assert sum(n > WINDOW for n in counts.values()) == 8
    tokens = conn.execute("SELECT sum(tokens) FROM embedkeeper.runs").fetchone()[0]
    assert tokens == sum(min(n, WINDOW) for n in counts.values())  # not infinity's characters
    assert "token_counts=tokenizer window=256" in result.stderr
    assert f" {tokens} tokens in " in result.stdout  # ours: not marked as the server's
    assert "backend_other_model" not in result.stderr


def test_long_documents_are_chunked_and_each_chunk_matches_the_model(
    cli, conn, infinity, model_dir, minilm
):
    texts = long_texts(6)
    ids = insert_docs(conn, texts)
    cli.configure(models=[model_entry(infinity, model_dir)])

    result = cli("backfill")

    assert result.returncode == 0, result.stderr
    chunks = conn.execute(
        "SELECT document_id, char_start, char_end, passage, embedding"
        " FROM embedkeeper.docs__inf_chunks ORDER BY document_id, chunk"
    ).fetchall()
    assert {c[0] for c in chunks} == set(ids)
    assert len(chunks) > 2 * len(ids)  # past the window: several chunks each
    text_of = dict(zip(ids, texts, strict=True))
    direct = minilm.model.encode([c[3] for c in chunks], normalize_embeddings=True)
    for (doc_id, start, end, passage, vector), expected in zip(chunks, direct, strict=True):
        assert text_of[doc_id][start:end] == passage
        assert float(np.dot(vector.to_numpy(), expected)) >= 0.9999
    truncated = conn.execute(
        "SELECT count(*) FILTER (WHERE truncated) FROM embedkeeper.docs__inf_documents"
    ).fetchone()
    assert truncated == (0,)  # every chunk fits the window: nothing cut


def test_a_reply_for_another_model_is_warned_about_once_per_pass(cli, conn, infinity, model_dir):
    """infinity serving one model answers any name with it: say so, once at start and once in
    the pass, however many requests."""
    insert_docs(conn, paragraphs(40))
    cli.configure(models=[model_entry(infinity, model_dir, model="all-minilm-l6-v2")])

    result = cli("backfill")

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "backend_other_model" in line]
    assert len(warnings) == 2, result.stderr  # the start-up probe, then the pass (3 requests)
    assert "asked=all-minilm-l6-v2 answered=minilm" in warnings[1]
    assert " run=" in warnings[1]


def test_a_model_that_disappears_mid_run_stops_the_pass_and_reviews_nothing(
    cli, conn, infinity, model_dir
):
    insert_docs(conn, paragraphs(20))
    cli.configure(
        models=[model_entry(infinity, model_dir)],
        retry={"transient_attempts": 3, "transient_backoff_max": "5s"},
    )
    port = free_port()
    child = cli.start("run", "--metrics-port", str(port))
    wait_for(lambda: count_rows(conn, "embeddings", "inf") == 20, 60, "the first pass", alive=child)
    health = f"http://127.0.0.1:{port}/healthz"
    assert httpx.get(health, timeout=2).status_code == 200

    # A crash, and the server back 10 s later: work resumes within a couple of seconds of its
    # return, not at the end of a grown backoff (12.6 s and 36 s were seen before).
    infinity.kill()
    insert_docs(conn, paragraphs(40)[20:], start=21)
    time.sleep(10)
    infinity.start("minilm")
    back = time.monotonic()
    wait_for(lambda: "circuit_closed" in child.output()[1], 30, "a probe to get through")
    resumed_s = time.monotonic() - back
    wait_for(lambda: count_rows(conn, "embeddings", "inf") == 40, 60, "the 20 new", alive=child)
    done_s = time.monotonic() - back
    log.info(
        "after /health answered: probe through in %.1f s, 20 documents in %.1f s", resumed_s, done_s
    )
    # A probe a second, and the cold model's first inference: 0.7 s and 2.0 s measured on two
    # busy cores. The 20 documents then take seconds more: the embedding itself.
    assert resumed_s < 3.0

    infinity.kill()  # the operator restarts it serving other models: "minilm" is gone
    insert_docs(conn, paragraphs(60)[40:], start=41)
    seconds = infinity.start("a-model", "b-model")
    log.info("infinity restarted with two models in %.1f s", seconds)

    def refused() -> list[str]:
        lines = child.output()[1].splitlines()
        return [line for line in lines if "pass_failed" in line and "BackendRefused" in line]

    lines = wait_for(refused, 60, "the pass to stop on the refusal", alive=child)
    assert httpx.get(health, timeout=2).status_code == 503  # it cannot work: alert
    child.process.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    assert re.search(
        r'does not serve model "minilm" \(HTTP 400: Invalid model: Engine for model name'
        r" `minilm` not found\. Available model names are \['a-model', 'b-model'\]\); set model",
        lines[0],
    ), lines[0]
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__inf_failures").fetchone() == (0,)
    assert count_rows(conn, "embeddings", "inf") == 40
    assert "InputRejected" not in child.output()[1]

    started = time.monotonic()
    result = cli("backfill")  # a one-shot says it in one line, and exits 1
    line = assert_one_error_line(result, 1, 'embedkeeper: error: [[models]] "inf": openai at ')
    assert 'does not serve model "minilm"' in line
    assert time.monotonic() - started < 30
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__inf_failures").fetchone() == (0,)
