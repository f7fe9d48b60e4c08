"""Passes and read paths that have nothing to embed load no model and make no table.

A scheduled pass from a systemd timer usually finds nothing to do: loading MiniLM costs it
seconds of torch start-up (10-33 s as a process before), so the model loads only when a pass
first has a document to embed. Read paths (coverage, stats, failures) of a pair whose tables
do not exist yet count it as all pending instead of making its tables.
"""

from __future__ import annotations

import json

from tests.cli.helpers import scalar
from tests.conftest import insert_docs

MODEL_LOADED = "model_loaded"


def pair_tables(conn, model: str) -> int:
    return scalar(
        conn,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'embedkeeper' AND tablename LIKE %s",
        (f"docs\\_\\_{model}\\_%",),
    )


def test_run_once_with_nothing_to_do_loads_no_model(cli, conn):
    insert_docs(conn, ["a short note about terminals", "another note, on window sizes"])
    cli.configure(model={"name": "minilm"})

    first = cli("run", "--once")
    second = cli("run", "--once")

    assert first.returncode == 0, first.stderr
    assert MODEL_LOADED in first.stderr  # it had two documents to embed
    assert second.returncode == 0, second.stderr
    assert "pass_done" in second.stderr
    assert MODEL_LOADED not in second.stderr
    assert scalar(conn, "SELECT count(*) FROM embedkeeper.docs__minilm_chunks") == 2


def test_a_model_loads_when_a_later_pass_finds_work(cli, conn):
    insert_docs(conn, ["the first text"])
    cli.configure(model={"name": "minilm"})
    assert cli("run", "--once").returncode == 0
    insert_docs(conn, ["a second text, added later"], start=2)

    later = cli("run", "--once")

    assert later.returncode == 0, later.stderr
    assert MODEL_LOADED in later.stderr
    assert scalar(conn, "SELECT count(*) FROM embedkeeper.docs__minilm_documents") == 2


def test_read_paths_of_a_pair_not_made_yet_make_no_table(cli, conn):
    insert_docs(conn, ["one text", "two texts", None])
    cli.configure(model={"name": "fresh"})
    assert pair_tables(conn, "fresh") == 0

    coverage = cli("coverage", "--json")
    stats = cli("stats", "--json")
    failures = cli("failures", "list")

    assert coverage.returncode == 0, coverage.stderr
    (row,) = json.loads(coverage.stdout)
    assert (row["total"], row["skipped"], row["embedded"], row["pending"]) == (3, 1, 0, 2)
    assert stats.returncode == 0, stats.stderr
    (figures,) = json.loads(stats.stdout)
    assert (figures["pending"], figures["in_review"]) == (2, 0)
    assert failures.returncode == 0, failures.stderr
    assert pair_tables(conn, "fresh") == 0
    assert MODEL_LOADED not in coverage.stderr + stats.stderr + failures.stderr
