"""Changing models through the installed command: `migrate` sets the serving model, `switch`
refuses an incomplete pair (exit 5, with the count) and then switches, `search` follows the
serving model, `models` lists the pairs and the switches, and `drop` refuses a configured or
serving pair and drops the old one."""

from __future__ import annotations

import json

from tests.cli.helpers import assert_one_error_line
from tests.conftest import insert_docs

TEXTS = [
    "PostgreSQL keeps table rows in heap pages of eight kilobytes.",
    "Bread rises because yeast ferments the sugars in the dough.",
    "A comet's tail always points away from the sun.",
    "   ",
]
MINILM = {"name": "minilm", "dimensions": 384, "batch_size": 16, "claim_size": 32}
# The null backend: a fixed vector at once, no model to load (the pair we switch to)
NULL = {"name": "fast", "backend": "null", "dimensions": 384}


def test_switch_refuses_an_incomplete_pair_then_serves_it_and_drop_removes_the_old(cli, conn):
    insert_docs(conn, TEXTS)
    cli.configure(models=[MINILM, NULL])
    migrated = cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "source docs: serving view embedkeeper.docs shows model minilm (set now)" in (
        migrated.stdout
    )
    assert cli("backfill", "--model", "minilm").returncode == 0

    refused = cli("switch", "docs", "fast")
    assert_one_error_line(refused, 5, "embedkeeper: error:")
    assert refused.stderr.strip().splitlines()[-1] == (
        "embedkeeper: error: docs/fast lacks 3 of 3 documents (3 pending; coverage 0.00%), so"
        " search would miss them: run `embedkeeper backfill --source docs --model fast` (or let"
        " the daemon catch up), or switch with --force"
    )
    listed = cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    pairs = {p["model"]: p for p in json.loads(listed.stdout)["pairs"]}
    assert (pairs["minilm"]["serving"], pairs["minilm"]["coverage_percent"]) == (True, 100.0)
    assert (pairs["fast"]["serving"], pairs["fast"]["missing"]) == (False, 3)
    assert pairs["minilm"]["size_bytes"] > 0
    assert pairs["minilm"]["last_pass_status"] == "ok"

    assert cli("backfill", "--model", "fast").returncode == 0
    switched = cli("switch", "docs", "fast")
    assert switched.returncode == 0, switched.stderr
    assert switched.stdout == "source docs: model fast serves embedkeeper.docs (was minilm)\n"
    searched = cli("search", "why does bread rise?", "-k", "1", "--json")
    assert searched.returncode == 0, searched.stderr
    assert json.loads(searched.stdout)[0]["model"] == "fast"  # the serving model, not the first

    configured = cli("drop", "docs", "minilm")
    assert_one_error_line(configured, 1, "embedkeeper: error:")
    assert "docs/minilm is still in the config" in configured.stderr
    serving = cli("drop", "docs", "fast", "--force")
    assert_one_error_line(serving, 1, "embedkeeper: error:")
    assert "docs/fast serves source docs" in serving.stderr

    cli.configure(models=[NULL])
    dropped = cli("drop", "docs", "minilm")
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.startswith(
        "dropped docs/minilm: embedkeeper.docs__minilm, embedkeeper.docs__minilm_documents,"
    )
    table = cli("models")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "source",
        "model",
        "serving",
        "coverage",
        "missing",
        "chunks",
        "size",
        "last",
        "pass",
    ]
    assert lines[1].split()[:5] == ["docs", "fast", "*", "100.00%", "0"]
    assert "recent switches:" in lines
    assert lines[-2].endswith("docs: minilm -> fast  by postgres")
    assert lines[-1].endswith("docs: (first, by migrate) -> minilm  by postgres")
    gone = conn.execute("SELECT to_regclass('embedkeeper.docs__minilm_chunks')").fetchone()
    assert gone == (None,)
