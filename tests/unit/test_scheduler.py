"""The APScheduler job: one pass at a time, backlog coalesced, late runs still run, first now."""

from __future__ import annotations

from datetime import UTC, datetime

from embedkeeper.config import ScheduleConfig
from embedkeeper.service.scheduler import build_scheduler


def test_the_pass_job_never_overlaps_and_starts_at_once():
    scheduler = build_scheduler(ScheduleConfig(interval_s=120, misfire_grace_s=30), lambda: None)
    [job] = scheduler.get_jobs()
    assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 30)
    assert job.trigger.interval.total_seconds() == 120
    assert job.next_run_time <= datetime.now(UTC)


def test_a_cron_schedule_and_a_watchdog_job():
    scheduler = build_scheduler(
        ScheduleConfig(interval_s=None, cron="*/10 * * * *"),
        lambda: None,
        every={"watchdog": (lambda: None, 15)},
    )
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert (
        str(jobs["pass"].trigger)
        == "cron[month='*', day='*', day_of_week='*', hour='*', minute='*/10']"
    )
    assert jobs["watchdog"].trigger.interval.total_seconds() == 15
