"""The text form of `embedkeeper stats`: one block per model, and a sparkline of the recent
passes' rate, for a person who would rather glance than read. Pure: figures in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from embedkeeper.service.progress import reused_percent

if TYPE_CHECKING:
    from embedkeeper.commands.stats import ModelStats
    from embedkeeper.store.state.run_stats import PassRate, RunFigures

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled from 0 to the largest: a pass twice as fast stands twice as
    high, so a dip reads as a dip and not as the floor of an arbitrary range."""
    top = max(values, default=0.0)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[round(max(v, 0.0) / top * (len(BARS) - 1))] for v in values)


def format_duration(seconds: float) -> str:
    """12.3 s, 5m 2s, 3h 4m, 2d 3h, 1h: two units at most are enough to judge an age or an ETA."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    size, unit, sub_size, sub = next(
        u for u in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")) if s >= u[0]
    )
    rest = s % size // sub_size
    return f"{s // size}{unit}" + (f" {rest}{sub}" if rest else "")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rate(docs_per_s: float, tokens_per_s: float) -> str:
    return f"{docs_per_s:,.1f} docs/s, {tokens_per_s:,.0f} tokens/s"


def _chunks(runs: RunFigures) -> list[str]:
    """What the window's passes sent to the model and what they kept of stored vectors; no line
    where no pass counted a chunk (none embedded, or only runs from before alembic 0010)."""
    if runs.chunks_embedded + runs.chunks_reused <= 0:
        return []
    share = reused_percent(runs.tokens_reused, runs.tokens)
    return [
        f"  chunks        {runs.chunks_embedded:,} embedded, {runs.chunks_reused:,} reused"
        f" ({runs.tokens_reused:,} tokens, {share or 0} % of the tokens)"
    ]


def _kept(last: PassRate) -> str:
    """The last pass's reuse, where it had some."""
    if last.chunks_reused <= 0:
        return ""
    sent_and_kept = last.chunks_embedded + last.chunks_reused
    return f", {last.chunks_reused:,} of {sent_and_kept:,} chunks reused"


def format_model(stats: ModelStats, with_source: bool = False) -> list[str]:
    """One pair's block, headed by its model's name (`source/model` where `with_source`)."""
    runs, backlog, last = stats.runs, stats.backlog, stats.runs.last
    by_status = ", ".join(f"{n} {status}" for status, n in runs.passes.items())
    name = f"{stats.source}/{runs.model}" if with_source else runs.model
    source_note = "the source is counted" if backlog.counted else "the source is not read"
    lines = [
        f"{name}  (last {format_duration(runs.since_s)}; from embedkeeper.runs and the"
        f" model's own tables, {source_note})",
        f"  passes        {sum(runs.passes.values())}" + (f": {by_status}" if by_status else ""),
        f"  documents     {runs.docs_embedded:,} embedded, {runs.docs_failed:,} failed,"
        f" {runs.tokens:,} tokens",
        *_chunks(runs),
    ]
    if last is not None and runs.median_docs_per_s is not None:
        lines += [
            f"  last pass     {_rate(last.docs_per_s, last.tokens_per_s)}"
            f" ({last.docs_ok:,} documents{_kept(last)}, finished {_when(last.finished_at)})",
            f"  median        {_rate(runs.median_docs_per_s, runs.median_tokens_per_s or 0.0)}"
            " (passes that embedded)",
        ]
        rates = [p.docs_per_s for p in runs.recent]
        which = f"last {len(rates)} passes" if len(rates) > 1 else "last pass"
        lines.append(
            f"  recent        {sparkline(rates)}  docs/s of the {which} that embedded,"
            f" {min(rates):,.1f} to {max(rates):,.1f}"
        )
    else:
        lines.append("  rate          no pass embedded anything in this window")
    eta = stats.eta_s
    if backlog.pending == 0:
        eta_text = "nothing to do"
    elif eta is None:
        eta_text = "no rate to go by"
    else:
        eta_text = f"ETA {format_duration(eta)} at the median rate"
    if backlog.counted:  # a small source with no statistics: read, and exact but for stale
        figure = f"{backlog.pending:,} pending (counted: the source has no statistics yet)"
    else:
        figure = f"~{backlog.pending:,} pending (estimate)"
    lines.append(f"  backlog       {figure}, {eta_text}")
    if runs.last_success_at is not None and runs.last_success_age_s is not None:
        age = format_duration(runs.last_success_age_s)
        lines.append(f"  last success  {_when(runs.last_success_at)}, {age} ago")
    else:
        lines.append("  last success  never")
    lines.append(f"  in review     {backlog.in_review:,}")
    return lines


def format_stats(rows: Sequence[ModelStats]) -> str:
    several = len({row.source for row in rows}) > 1  # as `coverage` adds its source column
    blocks = ["\n".join(format_model(row, several)) for row in rows]
    footer = "pending is an estimate: `embedkeeper coverage` counts it exactly (a source scan)"
    return "\n\n".join([*blocks, footer])
