"""`embedkeeper backfill`: one shot until nothing is pending, with progress and a summary.

A backfill always runs the content-hash sweep (it finds edits that moved no updated_at) and
retries failing documents at once, so it ends with every document embedded, skipped or in review.
A model is loaded only if its model has work to do, so a backfill with nothing to do is quick.
Documents another instance held when the pass met them are waited for (sync/held.py), so
exit 0 still means every embeddable document is embedded.

With `defer_index`, a model with work to do has its vector indexes dropped for the pass and
rebuilt in bulk after it (store/index/deferred_index.py); without it, indexes that a deferring
backfill
left dropped when it died are rebuilt before the pass.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from embedkeeper.app import App, open_app
from embedkeeper.commands.coverage import coverage_of, format_table
from embedkeeper.config import Config, ModelConfig, SourceConfig
from embedkeeper.logs import event
from embedkeeper.records import RunStats
from embedkeeper.service.progress import Progress, reused_percent
from embedkeeper.service.signals import stop_on_signals
from embedkeeper.store.db import connect
from embedkeeper.store.index.deferred_index import indexes_deferred, note_live_index
from embedkeeper.store.index.index_build import BuildSettings
from embedkeeper.store.index.vector_index import restore_quietly
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pass_io.prune import prune_all
from embedkeeper.store.report.coverage import Coverage
from embedkeeper.sync.held import run_until_released
from embedkeeper.sync.passes import PassContext, PassResult
from embedkeeper.sync.plan import PassOptions, Trigger

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_IN_REVIEW = 3
EXIT_STILL_HELD = 4


@dataclass(frozen=True, slots=True)
class BackfillResult:
    results: dict[str, PassResult]
    coverage: list[Coverage]
    interrupted: bool
    held: dict[str, int] = field(default_factory=dict)  # model: documents a peer still holds

    @property
    def exit_code(self) -> int:
        if any(self.held.values()):
            return EXIT_STILL_HELD
        return EXIT_IN_REVIEW if any(c.failed for c in self.coverage) else EXIT_OK


def backfill(
    app: App,
    models: Sequence[ModelConfig],
    *,
    sources: Sequence[SourceConfig] | None = None,
    limit: int | None = None,
    trigger: Trigger = "backfill",
    stop: threading.Event | None = None,
    defer_index: bool = False,
    index_settings: BuildSettings | None = None,
) -> BackfillResult:
    """Every pair of these models (and of these sources; default all) the config embeds, in
    the config's order; results and held counts keyed by the pair's label (the model's name
    with one source)."""
    stop = stop or threading.Event()
    names = {m.name for m in models}
    pairs = [
        pair
        for pair in app.pairs.values()
        if pair.model_name in names and (sources is None or pair.source in sources)
    ]
    results: dict[str, PassResult] = {}
    held: dict[str, int] = {}
    before = coverage_of(app, pairs)
    for pair, figures in zip(pairs, before, strict=True):
        if stop.is_set():
            break
        todo = figures.pending
        label = app.config.pair_label(pair.source, pair.model)
        with _index_guard(app, pair, todo, defer_index, index_settings):
            outcome = _backfill_pair(app, pair, todo, limit, trigger, stop)
        if outcome is not None:
            results[label], held[label] = outcome
    return BackfillResult(results, coverage_of(app, pairs), stop.is_set(), held)


def _index_guard(
    app: App,
    pair: Pair,
    todo: int,
    defer: bool,
    settings: BuildSettings | None,
) -> AbstractContextManager[object]:
    """Drop and rebuild the pair's vector indexes around a pass with work to do; otherwise
    rebuild what a dead deferring backfill left recorded."""
    timeout_s = app.config.connect_timeout_s
    with connect(app.url, timeout_s=timeout_s) as conn:
        target = app.index_target(conn, pair)
        if defer and todo:
            settings = settings or BuildSettings()
            return indexes_deferred(app.url, target, settings, timeout_s=timeout_s)
        restore_quietly(conn, target, settings)
        note_live_index(conn, target, todo)
    return nullcontext()


def _backfill_pair(
    app: App,
    pair: Pair,
    todo: int,
    limit: int | None,
    trigger: Trigger,
    stop: threading.Event,
) -> tuple[PassResult, int] | None:
    """The pair's pass, waiting for documents a peer holds (sync/held.py); None if there was
    nothing to do. The int: documents still held past claim_lease."""
    label = app.config.pair_label(pair.source, pair.model)
    if todo == 0:
        with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
            app.make_tables(conn, pair)
            deleted = prune_all(conn, pair)
        event(log, logging.INFO, "nothing_to_do", model=label, deleted=deleted)
        return None
    backend = app.backend(pair.model)
    progress = Progress(label, todo if limit is None else min(todo, limit))
    try:
        options = PassOptions.backfill(limit, trigger)
        ctx = PassContext(app, pair, backend, options, stop, progress.on_batch, progress.on_slice)
        return run_until_released(ctx)
    finally:
        progress.close()


def _server_counts(model: ModelConfig) -> bool:
    """The token figures are the server's own (its `usage`), not our tokenizer's count."""
    return model.is_http and model.tokenizer is None


def summary_line(name: str, s: RunStats, deleted: int, counted: str = "") -> str:
    """One pair's figures after its pass, and what the edit cost: the chunks sent to the model
    beside those whose stored vector was kept, and the kept share of the tokens."""
    share = reused_percent(s.reused_tokens, s.tokens)
    reused = (
        f"{s.reused_chunks} reused ({s.reused_tokens} tokens, {share or 0} % of the tokens)"
        if s.reused_chunks
        else "none reused"
    )
    return (
        f"{name}: {s.ok} embedded, {s.failed} failed, {s.skipped} skipped, "
        f"{deleted} deleted, {s.tokens} tokens{counted} in {s.elapsed_s:.1f} s "
        f"({s.docs_per_s:.1f} docs/s, {s.tokens_per_s:.0f} tokens/s); "
        f"{s.chunks} chunks embedded, {reused}"
    )


def cmd_backfill(args: argparse.Namespace, config: Config) -> int:
    """Print each model's figures and the coverage table; exit 128 + the signal if SIGTERM (143)
    or SIGINT (130) stopped it (after the batch in flight), 4 if another process still held some
    documents after claim_lease, 3 if some documents are in review."""
    pairs = config.chosen_pairs(args.source, args.model)
    models = list({m.name: m for _, m in pairs}.values())
    sources = list({s.source_name: s for s, _ in pairs}.values())
    app = open_app(config)
    stop = threading.Event()
    received = stop_on_signals(stop)
    try:
        result = backfill(
            app,
            models,
            sources=sources,
            limit=args.limit,
            stop=stop,
            defer_index=args.defer_index,
        )
    finally:
        app.close()
    model_of = {config.pair_label(s, m): m for s, m in pairs}
    for name, outcome in result.results.items():
        counted = " (the server's count)" if _server_counts(model_of[name]) else ""
        print(summary_line(name, outcome.stats, outcome.deleted, counted))
    print(format_table(result.coverage))
    if result.interrupted:
        print("interrupted: the batch in flight was finished or released", file=sys.stderr)
        return received.exit_code
    if result.exit_code == EXIT_STILL_HELD:
        held = ", ".join(f"{n} of {model}" for model, n in result.held.items() if n)
        print(
            f"documents still held by another process after [database] claim_lease: {held};"
            " run `embedkeeper backfill` again once it has finished",
            file=sys.stderr,
        )
    if result.exit_code == EXIT_IN_REVIEW:
        print("some documents are in review: see `embedkeeper failures list`", file=sys.stderr)
    return result.exit_code
