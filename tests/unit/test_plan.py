"""sync/plan.decide(): what a pass walks and prunes, as a table of (options, what it saw) ->
decision.

Each row is one situation a pass meets at its start; the decision is pure, so the table is the
whole specification of the scheduled pass's shortcuts and of when they are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from embedkeeper.config import SourceConfig
from embedkeeper.store.pass_io.claims import Phase
from embedkeeper.store.pass_io.observe import Observed
from embedkeeper.store.state.sync_state import SyncState, source_signature
from embedkeeper.sync.plan import PassDecision, PassOptions, decide

WITH_UPDATED_AT = SourceConfig(schema=None, table="docs", updated_at_column="updated_at")
WITHOUT_UPDATED_AT = SourceConfig(schema=None, table="docs")
WATERMARK = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SINCE = WATERMARK - timedelta(seconds=WITH_UPDATED_AT.watermark_lag_s)
FP = "16384:16384:0"
FP_AFTER_DELETE = "16384:16384:3"


def seen(
    source: SourceConfig = WITH_UPDATED_AT,
    *,
    signature: str | None = "same",
    watermark: datetime | None = WATERMARK,
    fingerprint: str | None = FP,
    log_position: int | None = None,
) -> SyncState:
    sig = source_signature(source) if signature == "same" else signature
    return SyncState(sig, watermark, fingerprint, log_position=log_position)


def observed(
    state: SyncState, *, fingerprint: str | None = FP, log_position: int | None = None
) -> Observed:
    return Observed(state, newest=WATERMARK, log_position=log_position, fingerprint=fingerprint)


WALK_ALL: list[Phase] = [("all", None)]
WALK_CHANGES: list[Phase] = [("changed", SINCE), ("retries", None)]


def full(phases: list[Phase]) -> PassDecision:
    """Prune everything before the walk, and nothing else."""
    return PassDecision(phases, True, None, False, False)


@pytest.mark.parametrize(
    ("options", "source", "saw", "expected"),
    [
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen()),
            PassDecision(WALK_CHANGES, False, SINCE, False, False),
            id="scheduled, nothing deleted: the change only, no prune beyond the changed rows",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(), fingerprint=FP_AFTER_DELETE),
            PassDecision(WALK_CHANGES, False, SINCE, True, False),
            id="scheduled, the table saw deletes: prune by key beside the walk",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(log_position=7), fingerprint=FP_AFTER_DELETE, log_position=9),
            PassDecision(WALK_CHANGES, False, SINCE, True, True),
            id="scheduled, the delete log moved: consult it",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(log_position=9), log_position=9),
            PassDecision(WALK_CHANGES, False, SINCE, False, False),
            id="scheduled, the delete log did not move: no need to read it",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(signature=None, watermark=None, fingerprint=None)),
            full(WALK_ALL),
            id="scheduled, first pass (no state yet): walk and prune everything",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(signature="another source")),
            full(WALK_ALL),
            id="scheduled, the [source] settings changed: start over",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(), fingerprint=None),
            full(WALK_CHANGES),
            id="scheduled, a view (no fingerprint now): the change, but prune everything",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(fingerprint=None)),
            full(WALK_CHANGES),
            id="scheduled, no fingerprint recorded: prune everything once",
        ),
        pytest.param(
            PassOptions.scheduled(WITH_UPDATED_AT),
            WITH_UPDATED_AT,
            observed(seen(watermark=None)),
            PassDecision(WALK_ALL, False, None, False, False),
            id="scheduled, known table but no watermark yet: walk all, prune nothing",
        ),
        pytest.param(
            PassOptions.scheduled(WITHOUT_UPDATED_AT),
            WITHOUT_UPDATED_AT,
            observed(seen(WITHOUT_UPDATED_AT, watermark=None)),
            PassDecision(WALK_ALL, False, None, False, False),
            id="scheduled, no updated_at column, nothing deleted: walk the key index only",
        ),
        pytest.param(
            PassOptions.scheduled(WITHOUT_UPDATED_AT),
            WITHOUT_UPDATED_AT,
            observed(seen(WITHOUT_UPDATED_AT, watermark=None), fingerprint=FP_AFTER_DELETE),
            PassDecision(WALK_ALL, False, None, True, False),
            id="scheduled, no updated_at column, deletes: prune by key beside the walk",
        ),
        pytest.param(
            PassOptions.sweep(),
            WITH_UPDATED_AT,
            observed(seen()),
            full(WALK_ALL),
            id="sweep: everything, whatever the state says",
        ),
        pytest.param(
            PassOptions.backfill(),
            WITH_UPDATED_AT,
            observed(seen(), fingerprint=FP_AFTER_DELETE, log_position=9),
            full(WALK_ALL),
            id="backfill: everything, whatever the state says",
        ),
    ],
)
def test_decide(
    options: PassOptions, source: SourceConfig, saw: Observed, expected: PassDecision
) -> None:
    assert decide(options, saw, source) == expected


def test_the_options_constructors_say_what_each_pass_is() -> None:
    scheduled = PassOptions.scheduled(WITH_UPDATED_AT)
    assert (scheduled.trigger, scheduled.stale_by, scheduled.changes_only) == (
        "schedule",
        "updated_at",
        True,
    )
    assert PassOptions.scheduled(WITHOUT_UPDATED_AT).stale_by == "none"
    sweep = PassOptions.sweep()
    assert (sweep.stale_by, sweep.retry_failed_now, sweep.changes_only) == ("hash", False, False)
    backfill = PassOptions.backfill(limit=10, trigger="demo")
    assert (backfill.trigger, backfill.stale_by, backfill.retry_failed_now, backfill.limit) == (
        "demo",
        "hash",
        True,
        10,
    )
