"""The daemon's lifecycle: start-up (retrying while the database is down), the scheduled passes,
sd_notify, and a graceful stop.

SIGTERM or SIGINT sets `stop`: the pass in flight stops claiming, finishes or releases its batch,
records its run, and the process exits 0. A second signal exits at once; claims die with the
database session, so nothing is lost either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from embedkeeper.app import App, BackendFactory, open_app
from embedkeeper.config import Config
from embedkeeper.errors import DatabaseUnavailable, Transient
from embedkeeper.logs import event
from embedkeeper.retry import Backoff
from embedkeeper.service.metrics import Metrics, serve
from embedkeeper.service.scheduler import build_scheduler
from embedkeeper.service.sdnotify import notify, watchdog_interval_s
from embedkeeper.service.signals import stop_on_signals
from embedkeeper.service.upkeep import refresh_backlog
from embedkeeper.service.worker import Worker

log = logging.getLogger(__name__)

BACKEND_RETRY_S = 1.0


def start_when_database_is_up(
    config: Config, stop: threading.Event, backend_factory: BackendFactory | None = None
) -> App | None:
    """Check the database and load every model, retrying with capped backoff while the database
    is unreachable (one log line per try). Ready means both are usable."""
    backoff = Backoff(None, config.retry.transient_backoff_max_s)
    while not stop.is_set():
        try:
            app = open_app(config, backend_factory)
            for model in config.models:
                app.backend(model)
            return app
        except Transient as exc:
            delay = backoff.next_delay_s() or 0.0  # never None: no limit on attempts
            down = "database" if isinstance(exc, DatabaseUnavailable) else "backend"
            if down == "backend":  # its probes already waited, each second: try again soon
                delay = min(delay, BACKEND_RETRY_S)
            event(
                log,
                logging.WARNING,
                f"{down}_unavailable",
                attempt=backoff.attempt,
                retry_in_s=round(delay, 1),
                detail=str(exc),
            )
            stop.wait(delay)
    return None


def _shut_down(scheduler: Any) -> None:
    deadline = time.monotonic() + 5
    while not scheduler.running and time.monotonic() < deadline:
        time.sleep(0.05)  # a signal that came just before start()
    if scheduler.running:
        scheduler.shutdown(wait=True)


def _on_stop(scheduler_box: dict[str, Any]) -> Callable[[], None]:
    """After the first signal: tell systemd, and shut the scheduler down on a thread of its own
    (shutdown(wait=True) waits for the pass in flight: not from the signal handler)."""

    def stopping() -> None:
        notify("STOPPING=1")
        if "scheduler" in scheduler_box:
            threading.Thread(
                target=_shut_down, args=(scheduler_box["scheduler"],), daemon=True
            ).start()

    return stopping


def _side_jobs(
    worker: Worker, config: Config, metrics_port: int | None
) -> dict[str, tuple[Callable[[], None], float]]:
    """The watchdog ping (under systemd) and the metrics' coverage and backlog jobs."""
    every: dict[str, tuple[Callable[[], None], float]] = {}
    interval = watchdog_interval_s()
    if interval:

        def ping_watchdog() -> None:
            if worker.healthy(within_s=2 * interval):
                notify("WATCHDOG=1")

        every["watchdog"] = (ping_watchdog, interval)
    if worker.metrics is None or not metrics_port:
        return every
    every["coverage"] = (worker.refresh_coverage, config.metrics.coverage_interval_s)
    every["backlog"] = (
        partial(refresh_backlog, worker.app, worker.metrics),
        config.metrics.backlog_interval_s,
    )
    return every


def _serve_metrics(
    config: Config, port: int | None
) -> tuple[Metrics | None, Callable[[], None] | None]:
    """/metrics and /healthz before the database and the backend are reached, so a probe can
    tell a daemon that waits for them ("starting", 503) from one that is not there."""
    if not port:
        return None, None
    metrics = Metrics([(s.source_name, m.name) for s, m in config.pairs()])
    stop_metrics = serve(metrics, config.metrics.host, port)
    event(log, logging.INFO, "metrics_serving", host=config.metrics.host, port=port)
    return metrics, stop_metrics


def warn_full_text_missing(app: App) -> None:
    """Say at start, once, what the config asks that migrate has not done yet."""
    for names in app.full_text_to_add():
        event(
            log,
            logging.WARNING,
            "full_text_missing",
            source=names.source,
            model=names.model,
            hint="the source has full_text but the pair's chunks have no full-text column yet:"
            " run `embedkeeper migrate` as the owner of schema embedkeeper",
        )


def run_once(config: Config) -> int:
    """One tick, as the schedule would run it, then exit: 0, 1 if a pass failed, or 128 + the
    signal that stopped it (as `backfill`)."""
    stop = threading.Event()
    received = stop_on_signals(stop)
    app = open_app(config)
    try:
        warn_full_text_missing(app)
        worker = Worker(app, stop)  # each model loads when a pass first has work for it
        worker.tick()
    finally:
        app.close()
    if stop.is_set():
        return received.exit_code
    return 1 if worker.passes_failed else 0


def run_daemon(
    config: Config, backend_factory: BackendFactory | None = None, metrics_port: int | None = None
) -> int:
    stop = threading.Event()
    scheduler_box: dict[str, Any] = {}
    stop_on_signals(stop, on_stop=_on_stop(scheduler_box), exit_on_second=True)
    port = metrics_port or config.metrics.port
    metrics, stop_metrics = _serve_metrics(config, port)  # from the first second: "starting"
    app = start_when_database_is_up(config, stop, backend_factory)
    if app is None:
        if stop_metrics is not None:
            stop_metrics()
        return 0
    warn_full_text_missing(app)
    worker = Worker(app, stop, metrics)
    every = _side_jobs(worker, config, port)
    if metrics is not None:
        metrics.ready = True
    scheduler = build_scheduler(config.schedule, worker.tick, every=every)
    scheduler_box["scheduler"] = scheduler
    if not stop.is_set():
        notify("READY=1")
        event(
            log,
            logging.INFO,
            "daemon_ready",
            models=",".join(m.name for m in config.models),
            schedule=config.schedule.cron or f"every {config.schedule.interval_s:g}s",
        )
        scheduler.start()
    app.close()
    if stop_metrics is not None:
        stop_metrics()
    event(log, logging.INFO, "daemon_stopped")
    return 0
