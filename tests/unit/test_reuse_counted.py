"""What an edit cost, in the lines a person reads (issue 24, "Counted"): the backfill's summary
always says how much of the pass was reused; a progress line says so once a batch reused any."""

from __future__ import annotations

import logging
import re

import pytest

from embedkeeper.commands.backfill import summary_line
from embedkeeper.records import RunStats
from embedkeeper.service.progress import Progress, reused_percent


@pytest.mark.parametrize(
    ("reused", "embedded", "percent"),
    [
        (0, 0, None),  # nothing at all: no share to give
        (0, 500, 0),
        (500, 0, 100),
        (120, 200, 38),  # 37.5 %
        (1, 10_000, 1),  # any reuse shows
        (10_000, 1, 99),  # and so does any token sent
    ],
)
def test_the_reused_share_of_the_tokens(reused, embedded, percent):
    assert reused_percent(reused, embedded) == percent


def test_the_summary_says_what_was_sent_and_what_was_kept():
    edit = RunStats(ok=2, chunks=5, tokens=200, reused_chunks=3, reused_tokens=120)
    edit.finish()
    line = summary_line("minilm", edit, deleted=1)
    assert line.startswith("minilm: 2 embedded, 0 failed, 0 skipped, 1 deleted, 200 tokens in ")
    assert line.endswith("; 5 chunks embedded, 3 reused (120 tokens, 38 % of the tokens)")


def test_the_summary_of_a_first_backfill_says_nothing_was_reused():
    first = RunStats(ok=4, chunks=9, tokens=900)
    first.finish()
    line = summary_line("minilm", first, deleted=0, counted=" (the server's count)")
    assert " 900 tokens (the server's count) in " in line
    assert line.endswith("; 9 chunks embedded, none reused")


def progress_fields(caplog) -> list[dict[str, str]]:
    return [
        dict(re.findall(r"(\w+)=(\S+)", r.getMessage()))
        for r in caplog.records
        if r.getMessage().startswith("progress ")
    ]


def test_a_progress_line_names_the_reuse_only_once_there_is_some(caplog):
    caplog.set_level(logging.INFO)
    progress = Progress("minilm", 10, interval_s=60.0, bar=False)
    try:
        progress.on_batch(RunStats(ok=2, chunks=2, tokens=80))
        progress.on_batch(RunStats(ok=6, chunks=7, tokens=280, reused_chunks=3, reused_tokens=120))
    finally:
        progress.close()

    first, second = progress_fields(caplog)
    assert first["done"] == "2"
    assert "reused_chunks" not in first
    assert "reused_pct" not in first
    assert (second["done"], second["reused_chunks"], second["reused_pct"]) == ("6", "3", "30")
