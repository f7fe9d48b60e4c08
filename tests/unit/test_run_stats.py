"""A pass's figures: its time and rates stop at its end, so a summary printed later (a backfill
of several pairs prints all of them at the end) gives each pass its own."""

from __future__ import annotations

import time

from embedkeeper.records import RunStats


def test_a_finished_pass_keeps_its_own_time_and_rate():
    stats = RunStats(ok=30, tokens=3000, started=time.monotonic() - 2.0)
    stats.finish()
    elapsed = stats.elapsed_s
    time.sleep(0.05)  # another pair's pass runs meanwhile
    assert stats.elapsed_s == elapsed
    assert 2.0 <= elapsed < 2.5
    assert stats.docs_per_s == 30 / elapsed


def test_an_unfinished_pass_counts_until_now_and_a_merge_keeps_the_later_end():
    first = RunStats(ok=1, started=time.monotonic() - 1.0)
    assert first.elapsed_s < first.elapsed_s  # still running: time moves
    later = RunStats(ok=2)
    later.finish()
    merged = first.merged(later)
    assert (merged.ok, merged.started, merged.finished) == (3, first.started, later.finished)
