"""What a pass walks and what it prunes: a pure decision from what the pass saw at its start.

A scheduled pass (`changes_only`) with a watermark walks the rows changed since it and the due
retries, and prunes by key only when the table's deleted-row counters moved (in the background,
beside the walk), or from the delete log when the log accounts for every delete. Any other pass
walks the whole key index and prunes everything before it walks. store/state/sync_state.py says what
the state means; sync/passes.py carries the decision out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from embedkeeper.config import SourceConfig
from embedkeeper.store.pass_io.claims import Phase
from embedkeeper.store.pass_io.observe import Observed
from embedkeeper.store.source.queries import StaleBy
from embedkeeper.store.state.sync_state import source_signature

Trigger = Literal["backfill", "demo", "schedule", "sweep"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PassOptions:
    """How a pass looks for work; built by the named constructors below."""

    trigger: str  # recorded in runs.trigger
    stale_by: StaleBy  # what makes an embedded document stale: a newer updated_at, or its hash
    retry_failed_now: bool  # a backfill retries failed documents at once, up to max_attempts
    changes_only: bool  # walk what changed since the watermark (plus due retries) if it can
    limit: int | None = None  # stop after this many documents (backfill --limit)

    @classmethod
    def scheduled(cls, source: SourceConfig) -> PassOptions:
        """The daemon's regular pass: the change since the last one."""
        stale_by: StaleBy = "updated_at" if source.updated_at_column else "none"
        return cls(trigger="schedule", stale_by=stale_by, retry_failed_now=False, changes_only=True)

    @classmethod
    def sweep(cls) -> PassOptions:
        """The daemon's periodic content-hash sweep: every document, edits that moved no
        updated_at included; the net under the scheduled pass's shortcuts."""
        return cls(trigger="sweep", stale_by="hash", retry_failed_now=False, changes_only=False)

    @classmethod
    def backfill(cls, limit: int | None = None, trigger: Trigger = "backfill") -> PassOptions:
        """A one-shot pass: a sweep that also retries failing documents at once."""
        return cls(
            trigger=trigger, stale_by="hash", retry_failed_now=True, changes_only=False, limit=limit
        )


@dataclass(frozen=True, slots=True)
class PassDecision:
    phases: list[Phase]  # where the pass walks, in order
    prune_first: bool  # prune everything before the walk (and record the fingerprint)
    prune_changed_since: datetime | None  # changed rows may have gone blank or out of scope
    prune_deleted_beside: bool  # the table saw deletes: prune by key beside the walk
    consult_log: bool  # the delete log moved: it may account for every delete


def decide(options: PassOptions, observed: Observed, source: SourceConfig) -> PassDecision:
    """Pure: the walk and the prunes for a pass with these options, given what it saw."""
    seen = observed.seen
    # Records of other chunking settings are found by the walk of everything, not of the change.
    since = seen.since(source) if options.changes_only and not observed.rechunk else None
    phases: list[Phase] = [("changed", since), ("retries", None)] if since else [("all", None)]
    known = (
        observed.fingerprint is not None
        and seen.fingerprint is not None
        and seen.signature == source_signature(source)
    )
    if not (known and options.changes_only):
        return PassDecision(phases, True, None, False, False)
    return PassDecision(
        phases,
        prune_first=False,
        prune_changed_since=since,
        prune_deleted_beside=observed.fingerprint != seen.fingerprint,
        consult_log=(
            observed.log_position is not None and observed.log_position != seen.log_position
        ),
    )
