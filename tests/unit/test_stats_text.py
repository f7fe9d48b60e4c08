"""The pure parts of `embedkeeper stats`: the sparkline, durations, the ETA, and the config keys
issue 14 added."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from embedkeeper.commands.stats import ModelStats
from embedkeeper.commands.stats_text import format_duration, format_model, sparkline
from embedkeeper.config import parse_config
from embedkeeper.errors import ConfigError
from embedkeeper.store.report.backlog import Backlog
from embedkeeper.store.state.run_stats import PassRate, RunFigures


@pytest.mark.parametrize(
    ("values", "chart"),
    [
        ([], ""),
        ([0.0, 0.0], "▁▁"),
        ([1.0, 2.0, 4.0, 8.0], "▂▃▅█"),
        ([5.0, 5.0, 5.0], "███"),
        ([0.0, 70.0, 35.0], "▁█▅"),
    ],
)
def test_sparkline_scales_from_zero_to_the_fastest(values, chart):
    assert sparkline(values) == chart


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (12.34, "12.3 s"),
        (60, "1m"),
        (302, "5m 2s"),
        (3600, "1h"),
        (11040, "3h 4m"),
        (86400, "1d"),
        (183600, "2d 3h"),
    ],
)
def test_durations_keep_two_units_at_most(seconds, text):
    assert format_duration(seconds) == text


def stats(pending: int, median: float | None) -> ModelStats:
    moment = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    recent = (PassRate(1, moment, moment, 10, median, 100.0),) if median else ()
    runs = RunFigures("m", 86400, {"ok": 1}, 10, 0, 1000, median, 100.0, recent, moment, 60.0)
    return ModelStats(runs, Backlog("m", pending, 0, 0, 0))


def test_eta_is_the_backlog_at_the_median_rate():
    assert stats(pending=100, median=40.0).eta_s == 2.5
    assert stats(pending=0, median=None).eta_s == 0.0
    assert stats(pending=100, median=None).eta_s is None
    assert "  backlog       ~100 pending (estimate), no rate to go by" in format_model(
        stats(100, None)
    )


def test_runs_keep_and_backlog_interval_are_durations():
    config = parse_config(
        {
            "source": {"table": "docs"},
            "runs": {"keep": "7d"},
            "metrics": {"backlog_interval": "5s"},
        },
        {},
        path=Path("x.toml"),
    )
    assert config.runs.keep_s == 7 * 86400
    assert config.metrics.backlog_interval_s == 5
    default = parse_config({"source": {"table": "docs"}}, {}, path=Path("x.toml"))
    assert (default.runs.keep_s, default.metrics.backlog_interval_s) == (30 * 86400, 30)


def test_an_unknown_runs_key_names_the_right_one():
    with pytest.raises(ConfigError) as error:
        parse_config({"source": {"table": "docs"}, "runs": {"kep": "1d"}}, {}, path=Path("x"))
    assert str(error.value) == 'config: unknown key "kep" in [runs]; did you mean "keep"?'


def test_a_model_with_no_runs_says_so():
    empty = ModelStats(RunFigures("m", 3600), Backlog("m", 12, 0, 0, 0))
    assert format_model(empty) == [
        "m  (last 1h; from embedkeeper.runs and the model's own tables, the source is not read)",
        "  passes        0",
        "  documents     0 embedded, 0 failed, 0 tokens",
        "  rate          no pass embedded anything in this window",
        "  backlog       ~12 pending (estimate), no rate to go by",
        "  last success  never",
        "  in review     0",
    ]
    assert empty.as_json()["docs_per_s"] is None
    assert empty.as_json()["last_success_at"] is None


def test_with_several_sources_each_block_names_its_pair():
    from embedkeeper.commands.stats_text import format_stats

    rows = [
        ModelStats(RunFigures("minilm", 3600), Backlog("minilm", 1, 0, 0, 0), source)
        for source in ("debian", "pydoc")
    ]
    heads = [block.splitlines()[0].split()[0] for block in format_stats(rows).split("\n\n")]
    assert heads[:2] == ["debian/minilm", "pydoc/minilm"]
    assert format_stats(rows[:1]).startswith("minilm  (last 1h;")
