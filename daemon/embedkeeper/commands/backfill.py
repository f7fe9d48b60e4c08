"""`embedkeeper backfill`: one shot until nothing is pending, with progress and a summary.

A backfill always runs the content-hash sweep (it finds edits that moved no updated_at) and
retries failing documents at once, so it ends with every document embedded, skipped or in review.
A model is loaded only if its model has work to do, so a backfill with nothing to do is quick.

With `defer_index`, a model with work to do has its vector indexes dropped for the pass and
rebuilt in bulk after it (store/deferred_index.py); without it, indexes that a deferring backfill
left dropped when it died are rebuilt before the pass.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from embedkeeper.app import App, open_app
from embedkeeper.commands import chosen_models
from embedkeeper.commands.coverage import coverage_of, format_table
from embedkeeper.commands.progress import Progress
from embedkeeper.config import Config, ModelConfig
from embedkeeper.logs import event
from embedkeeper.service.signals import stop_on_signals
from embedkeeper.store.coverage import Coverage
from embedkeeper.store.db import connect
from embedkeeper.store.deferred_index import indexes_deferred, note_live_index
from embedkeeper.store.index_build import BuildSettings
from embedkeeper.store.prune import prune_all
from embedkeeper.store.vector_index import restore_quietly
from embedkeeper.sync.passes import PassContext, PassResult, run_pass
from embedkeeper.sync.plan import PassOptions, Trigger

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_IN_REVIEW = 3


@dataclass(frozen=True, slots=True)
class BackfillResult:
    results: dict[str, PassResult]
    coverage: list[Coverage]
    interrupted: bool

    @property
    def exit_code(self) -> int:
        return EXIT_IN_REVIEW if any(c.failed for c in self.coverage) else EXIT_OK


def backfill(
    app: App,
    models: Sequence[ModelConfig],
    *,
    limit: int | None = None,
    trigger: Trigger = "backfill",
    stop: threading.Event | None = None,
    defer_index: bool = False,
    index_settings: BuildSettings | None = None,
) -> BackfillResult:
    stop = stop or threading.Event()
    results: dict[str, PassResult] = {}
    before = {c.model: c for c in coverage_of(app, models)}
    for model in models:
        if stop.is_set():
            break
        todo = before[model.name].pending
        with _index_guard(app, model.name, todo, defer_index, index_settings):
            outcome = _backfill_model(app, model, todo, limit, trigger, stop)
        if outcome is not None:
            results[model.name] = outcome
    return BackfillResult(results, coverage_of(app, models), stop.is_set())


def _index_guard(
    app: App, model: str, todo: int, defer: bool, settings: BuildSettings | None
) -> AbstractContextManager[object]:
    """Drop and rebuild the model's vector indexes around a pass with work to do; otherwise
    rebuild what a dead deferring backfill left recorded."""
    timeout_s = app.config.connect_timeout_s
    if defer and todo:
        return indexes_deferred(app.url, model, settings or BuildSettings(), timeout_s=timeout_s)
    with connect(app.url, timeout_s=timeout_s) as conn:
        restore_quietly(conn, model, settings)
        note_live_index(conn, model, todo)
    return nullcontext()


def _backfill_model(
    app: App,
    model: ModelConfig,
    todo: int,
    limit: int | None,
    trigger: Trigger,
    stop: threading.Event,
) -> PassResult | None:
    if todo == 0:
        with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
            deleted = prune_all(conn, app.queries, model.name)
        event(log, logging.INFO, "nothing_to_do", model=model.name, deleted=deleted)
        return None
    backend = app.backend(model)
    progress = Progress(model.name, todo if limit is None else min(todo, limit))
    try:
        options = PassOptions.backfill(limit, trigger)
        return run_pass(PassContext(app, model, backend, options, stop, progress))
    finally:
        progress.close()


def _server_counts(model: ModelConfig) -> bool:
    """The token figures are the server's own (its `usage`), not our tokenizer's count."""
    return model.is_http and model.tokenizer is None


def cmd_backfill(args: argparse.Namespace, config: Config) -> int:
    """Print each model's figures and the coverage table; exit 1 if SIGTERM or SIGINT stopped
    it (after the batch in flight), 3 if some documents are in review."""
    models = chosen_models(config, args.model)
    app = open_app(config)
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        result = backfill(app, models, limit=args.limit, stop=stop, defer_index=args.defer_index)
    finally:
        app.close()
    for name, outcome in result.results.items():
        s = outcome.stats
        counted = " (the server's count)" if _server_counts(config.model(name)) else ""
        print(
            f"{name}: {s.ok} embedded, {s.failed} failed, {s.skipped} skipped, "
            f"{outcome.deleted} deleted, {s.tokens} tokens{counted} in {s.elapsed_s:.1f} s "
            f"({s.docs_per_s:.1f} docs/s, {s.tokens_per_s:.0f} tokens/s)"
        )
    print(format_table(result.coverage))
    if result.interrupted:
        print("interrupted: the batch in flight was finished or released", file=sys.stderr)
        return 1
    if result.exit_code == 3:
        print("some documents are in review: see `embedkeeper failures list`", file=sys.stderr)
    return result.exit_code
