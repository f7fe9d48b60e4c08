"""`embedkeeper backfill`: one shot until nothing is pending, with progress and a summary.

A backfill always runs the content-hash sweep (it finds edits that moved no updated_at) and
retries failing documents at once, so it ends with every document embedded, skipped or in review.
A model is loaded only if its model has work to do, so a backfill with nothing to do is quick.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from daemon.config import ModelConfig
from daemon.coverage import Coverage, measure
from daemon.db import connect
from daemon.logs import event
from daemon.passes import PassOptions, PassResult, prune, run_pass
from daemon.progress import Progress
from daemon.startup import App

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


def coverage_of(app: App, models: Sequence[ModelConfig]) -> list[Coverage]:
    with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
        return [measure(conn, app.queries, m.name) for m in models]


def backfill(
    app: App,
    models: Sequence[ModelConfig],
    *,
    limit: int | None = None,
    trigger: str = "backfill",
    stop: threading.Event | None = None,
) -> BackfillResult:
    stop = stop or threading.Event()
    results: dict[str, PassResult] = {}
    before = {c.model: c for c in coverage_of(app, models)}
    for model in models:
        if stop.is_set():
            break
        todo = before[model.name].pending
        if todo == 0:
            with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
                deleted = prune(conn, app.queries, model.name)
            event(log, logging.INFO, "nothing_to_do", model=model.name, deleted=deleted)
            continue
        backend = app.backend(model)
        progress = Progress(model.name, todo if limit is None else min(todo, limit))
        try:
            results[model.name] = run_pass(
                app.url,
                app.config,
                app.queries,
                model,
                backend,
                PassOptions(trigger, "hash", ignore_retry_delay=True, limit=limit),
                stop,
                on_batch=progress,
            )
        finally:
            progress.close()
    return BackfillResult(results, coverage_of(app, models), stop.is_set())


def stop_on_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: finish the batch in flight and stop. Second: stop now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        event(log, logging.WARNING, "stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
