"""`embedkeeper backfill` against the Ollama stand-in: a url and a model name are all it needs."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cli.helpers import assert_one_error_line, count_rows, wait_for
from tests.conftest import insert_docs
from tests.invariants import check_invariants
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
    assert " tokens (the server's count) in " in result.stdout.splitlines()[0]
    row = conn.execute(
        "SELECT count(*), min(vector_dims(embedding)) FROM embedkeeper.docs__nomic_chunks"
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
    assert count_rows(conn, "embeddings", "nomic") == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(text: str, name: str) -> float:
    match = re.search(rf'^{re.escape(name)}\{{model="nomic",source="docs"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else -1.0


def test_the_daemon_serves_metrics_and_health(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(10)])
    cli.configure(
        models=[{"name": "nomic", "backend": "ollama", "model": "m", "url": server.url}],
        metrics={"coverage_interval": "1s"},
    )
    port = free_port()
    child = cli.start("run", "--metrics-port", str(port))
    base = f"http://127.0.0.1:{port}"

    def scrape() -> str:
        try:
            return httpx.get(base + "/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    def settled() -> str | None:
        text = scrape()
        done = metric(text, "embedkeeper_pending") == 0 and metric(text, "embedkeeper_total") == 10
        return text if done else None

    text = wait_for(settled, 60, "metrics showing nothing pending", alive=child)
    assert metric(text, "embedkeeper_documents_embedded_total") == 10
    assert metric(text, "embedkeeper_total") == 10
    assert metric(text, "embedkeeper_last_success_timestamp_seconds") > 0
    assert "embedkeeper_batch_seconds_bucket" in text
    assert httpx.get(base + "/healthz", timeout=2).status_code == 200

    child.process.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0


@pytest.mark.chaos
def test_a_second_sigterm_exits_at_once(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(4)])
    cli.configure(
        models=[
            {
                "name": "nomic",
                "backend": "ollama",
                "model": "m",
                "url": server.url,
                "timeout": "60s",
            }
        ]
    )
    child = cli.start("run")
    wait_for(lambda: server.calls.requests >= 1, 30, "the probe", alive=child)
    server.faults.hang_first, server.faults.hang_s = 1, 40.0  # the first batch hangs
    wait_for(lambda: server.calls.requests >= 2, 30, "the hanging batch", alive=child)

    child.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert child.process.poll() is None  # the first signal waits for the batch in flight
    child.process.send_signal(signal.SIGTERM)
    assert child.wait(10) == 1
    assert "stop_now signal=SIGTERM" in child.output()[1]

    # The server ends the dead client's session a moment after the exit; its claims go with it.
    def no_claims() -> bool:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
        return row == (0,)

    wait_for(no_claims, 10, "the exited daemon's claims to go")


def test_the_daemon_pings_the_watchdog_and_says_ready_and_stopping(cli, conn, server, tmp_path):
    insert_docs(conn, ["one", "two"])
    cli.configure(models=[{"name": "nomic", "backend": "ollama", "model": "m", "url": server.url}])
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        child = cli.start("run", NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
        messages = [sock.recv(100).decode() for _ in range(3)]
        assert messages[0] == "READY=1"
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]  # every WatchdogSec / 2
        child.process.send_signal(signal.SIGTERM)
        while (message := sock.recv(100).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert child.wait(30) == 0


@pytest.mark.chaos
def test_a_stopped_worker_loses_its_claims_and_its_late_write_lands_nowhere(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(8)])
    cli.configure(
        database={"claim_lease": "1s"},
        models=[
            {
                "name": "nomic",
                "backend": "ollama",
                "model": "m",
                "url": server.url,
                "batch_size": 8,
                "claim_size": 8,
                "timeout": "60s",
            }
        ],
    )
    server.faults.hang_first, server.faults.hang_s = 2, 4.0  # the probe is call 1: it hangs too
    zombie = cli.start("backfill")
    wait_for(lambda: server.calls.requests >= 2, 30, "the batch request", alive=zombie)
    zombie.process.send_signal(signal.SIGSTOP)  # stopped while it holds the 8 claims
    try:
        wait_for(
            lambda: (
                conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
                == (0,)
            ),
            30,
            "the zombie's claims to expire with its session",
        )
        peer = cli("backfill")
        assert peer.returncode == 0, peer.stderr
        before = conn.execute(
            "SELECT document_id, embedded_at FROM embedkeeper.docs__nomic_documents ORDER BY 1"
        ).fetchall()
        assert len(before) == 8
    finally:
        zombie.process.send_signal(signal.SIGCONT)
    assert zombie.wait(60) == 0, zombie.output()[1]
    after = conn.execute(
        "SELECT document_id, embedded_at FROM embedkeeper.docs__nomic_documents ORDER BY 1"
    ).fetchall()
    assert after == before  # the late write changed nothing
    assert "database connection lost" in zombie.output()[1]
    check_invariants(conn, model="nomic")


def test_run_once_stopped_by_sigterm_exits_143_and_logs_the_pass_interrupted(cli, conn, server):
    insert_docs(conn, [f"served text {i}" for i in range(4)])
    cli.configure(models=[{"name": "nomic", "backend": "ollama", "model": "m", "url": server.url}])
    child = cli.start("run", "--once")
    wait_for(lambda: server.calls.requests >= 1, 30, "the probe", alive=child)
    server.faults.hang_first, server.faults.hang_s = 1, 3.0  # the first batch is slow
    wait_for(lambda: server.calls.requests >= 2, 30, "the slow batch", alive=child)

    child.process.send_signal(signal.SIGTERM)
    code = child.wait(30)
    _, stderr = child.output()

    assert code == 143, stderr
    assert "pass_start model=nomic trigger=schedule" in stderr
    assert "pass_interrupted model=nomic trigger=schedule ok=4" in stderr
    assert "pass_done" not in stderr
    runs = conn.execute("SELECT status, docs_ok FROM embedkeeper.runs").fetchall()
    assert runs == [("interrupted", 4)]


def openai_model(server: StandIn, **extra: object) -> dict[str, object]:
    return {"name": "mini", "backend": "openai", "model": "minilm", "url": server.url, **extra}


def test_a_model_the_server_does_not_serve_is_one_line_naming_entry_url_and_fix(cli, conn, server):
    insert_docs(conn, ["text"])
    server.faults.serves = ["other-model"]  # infinity's 400 naming the model
    cli.configure(models=[openai_model(server, url=server.url + "/embeddings")])

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error: ")
    assert line == (
        f'embedkeeper: error: [[models]] "mini": openai at {server.url}/embeddings does not serve'
        ' model "minilm" (HTTP 400: Invalid model: Engine for model name `minilm` not found.'
        " Available model names are ['other-model']); set model to a name the server serves"
    )
    assert server.calls.requests == 1  # refused at once, not retried
    assert count_rows(conn, "failures", "mini") == 0


def test_a_wrong_path_shows_the_servers_words_not_a_dict(cli, conn, server):
    insert_docs(conn, ["text"])
    cli.configure(models=[openai_model(server, url=server.url + "/api")])

    result = cli("backfill")

    line = assert_one_error_line(result, 1, "embedkeeper: error: ")
    assert line == (
        f'embedkeeper: error: [[models]] "mini": openai at {server.url}/api/v1/embeddings answered'
        " HTTP 404: Not Found; check url (the server's embeddings path: docs/servers.md) and"
        ' model "minilm"'
    )


def test_healthz_answers_from_the_first_second_and_work_starts_when_the_server_does(
    cli, conn, server
):
    insert_docs(conn, [f"served text {i}" for i in range(6)])
    server.faults.unavailable_first = 10**6  # the server is there but not ready (503)
    cli.configure(
        models=[openai_model(server)],
        retry={"transient_backoff_max": "30s"},
    )
    port = free_port()
    started = time.monotonic()
    child = cli.start("run", "--metrics-port", str(port))
    health = f"http://127.0.0.1:{port}/healthz"

    def answer() -> httpx.Response | None:
        try:
            return httpx.get(health, timeout=1)
        except httpx.HTTPError:
            return None

    first = wait_for(answer, 10, "/healthz to answer", interval_s=0.02, alive=child)
    assert (first.status_code, first.text) == (503, "starting\n")
    # 1.5 s measured on 2 busy cores, the interpreter's start-up and imports included; before,
    # nothing listened until the database and the backend had been reached.
    assert time.monotonic() - started < 3.0
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
    assert metrics.status_code == 200

    wait_for(lambda: server.calls.requests >= 8, 60, "the start-up probes", alive=child)
    back = time.monotonic()
    server.faults.unavailable_first = 0
    wait_for(lambda: (r := answer()) is not None and r.status_code == 200, 30, "ready", alive=child)
    wait_for(
        lambda: count_rows(conn, "embeddings", "mini") == 6,
        30,
        "the documents",
        alive=child,
    )
    assert server.calls.answered_at[0] - back < 2.5  # probed each second, not after 30 s
    child.process.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
