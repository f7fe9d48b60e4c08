"""APScheduler 3 wiring: the pass job on an interval or cron trigger, run one at a time.

max_instances=1 means a slow pass is never overlapped by the next; coalesce folds a backlog of
missed runs into one; misfire_grace_time lets a run that was late (the machine slept, the previous
pass ran long) still happen. The first pass starts at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from embedkeeper.config import ScheduleConfig


def make_trigger(schedule: ScheduleConfig) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron)
    return IntervalTrigger(seconds=schedule.interval_s or 300.0)


def build_scheduler(
    schedule: ScheduleConfig,
    tick: Callable[[], None],
    *,
    every: Mapping[str, tuple[Callable[[], None], float]] | None = None,
) -> Any:
    """The pass job, plus side jobs (`every`: id -> (function, seconds)) such as the watchdog
    ping and the coverage gauges, each also one at a time. Side jobs, too, first run at once:
    gauges that wait one coverage_interval after a restart look like "no data" to an alert."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    workers = 1 + len(every or {})
    scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(max_workers=workers)})
    scheduler.add_job(
        tick,
        make_trigger(schedule),
        id="pass",
        name="embedkeeper pass",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, round(schedule.misfire_grace_s)),
        next_run_time=datetime.now(UTC),
    )
    for job_id, (function, seconds) in (every or {}).items():
        scheduler.add_job(
            function,
            IntervalTrigger(seconds=seconds),
            id=job_id,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
    return scheduler
