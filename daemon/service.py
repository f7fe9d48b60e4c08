"""The daemon's lifecycle: start-up (retrying while the database is down), the scheduled passes,
sd_notify, and a graceful stop.

SIGTERM or SIGINT sets `stop`: the pass in flight stops claiming, finishes or releases its batch,
records its run, and the process exits 0. A second signal exits at once; claims die with the
database session, so nothing is lost either way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from daemon.config import Config
from daemon.errors import BackendUnavailable, DatabaseUnavailable, EmbedkeeperError
from daemon.logs import event
from daemon.passes import PassOptions, run_pass
from daemon.pipeline import RunStats
from daemon.queries import StaleBy
from daemon.retry import transient_delay_s
from daemon.scheduler import build_scheduler
from daemon.sdnotify import notify, watchdog_interval_s
from daemon.startup import App, BackendFactory, open_app

log = logging.getLogger(__name__)


class Worker:
    """What one scheduled tick does: a pass per model, and a content-hash sweep when one is due."""

    def __init__(self, app: App, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop
        self.busy = False
        self.heartbeat = time.monotonic()
        self.last_sweep: dict[str, float] = {}

    def tick(self) -> None:
        self.busy, self.heartbeat = True, time.monotonic()
        try:
            for model in self.app.config.models:
                if self.stop.is_set():
                    return
                self._pass(model.name)
        finally:
            self.busy, self.heartbeat = False, time.monotonic()

    def _pass(self, name: str) -> None:
        config = self.app.config
        model = config.model(name)
        regular: StaleBy = "updated_at" if config.source.updated_at_column else "none"
        due = (
            time.monotonic() - self.last_sweep.get(name, -1e18) >= config.schedule.sweep_interval_s
        )
        plans = [PassOptions("schedule", regular, ignore_retry_delay=False)]
        if due:
            plans.append(PassOptions("sweep", "hash", ignore_retry_delay=False))
        for options in plans:
            if self.stop.is_set():
                return
            try:
                result = run_pass(
                    self.app.url,
                    config,
                    self.app.queries,
                    model,
                    self.app.backends[name],
                    options,
                    self.stop,
                    on_batch=self._beat,
                )
            except EmbedkeeperError as exc:
                event(
                    log,
                    logging.ERROR,
                    "pass_failed",
                    model=name,
                    trigger=options.trigger,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                return
            if options.trigger == "sweep":
                self.last_sweep[name] = time.monotonic()
            s = result.stats
            event(
                log,
                logging.INFO,
                "pass_done",
                model=name,
                trigger=options.trigger,
                ok=s.ok,
                failed=s.failed,
                skipped=s.skipped,
                deleted=result.deleted,
                docs_per_s=round(s.docs_per_s, 1),
                elapsed_s=round(s.elapsed_s, 2),
            )

    def _beat(self, stats: RunStats) -> None:
        self.heartbeat = time.monotonic()

    def healthy(self, within_s: float) -> bool:
        return not self.busy or time.monotonic() - self.heartbeat < within_s


def start_when_database_is_up(
    config: Config, stop: threading.Event, backend_factory: BackendFactory | None = None
) -> App | None:
    """Check the database and load every model, retrying with capped backoff while the database
    is unreachable (one log line per try). Ready means both are usable."""
    attempt = 0
    while not stop.is_set():
        try:
            app = open_app(config, backend_factory)
            for model in config.models:
                app.backend(model)
            return app
        except (DatabaseUnavailable, BackendUnavailable) as exc:
            attempt += 1
            delay = transient_delay_s(attempt, config.retry.transient_backoff_max_s)
            down = "database" if isinstance(exc, DatabaseUnavailable) else "backend"
            event(
                log,
                logging.WARNING,
                f"{down}_unavailable",
                attempt=attempt,
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


def run_daemon(config: Config, backend_factory: BackendFactory | None = None) -> int:
    stop = threading.Event()
    scheduler_box: dict[str, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            event(log, logging.WARNING, "stop_now", signal=signal.Signals(signum).name)
            os._exit(1)
        event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
        notify("STOPPING=1")
        stop.set()
        if "scheduler" in scheduler_box:
            # shutdown(wait=True) waits for the pass in flight: not from the signal handler.
            threading.Thread(
                target=_shut_down, args=(scheduler_box["scheduler"],), daemon=True
            ).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = start_when_database_is_up(config, stop, backend_factory)
    if app is None:
        return 0
    worker = Worker(app, stop)
    interval = watchdog_interval_s()

    def ping_watchdog() -> None:
        if worker.healthy(within_s=2 * (interval or 0)):
            notify("WATCHDOG=1")

    scheduler = build_scheduler(
        config.schedule, worker.tick, watchdog=ping_watchdog, watchdog_interval_s=interval
    )
    scheduler_box["scheduler"] = scheduler
    if stop.is_set():
        app.close()
        return 0
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
    event(log, logging.INFO, "daemon_stopped")
    return 0
