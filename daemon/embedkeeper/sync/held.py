"""Documents another process holds: wait for them before a backfill reports.

A backfill promises that exit 0 means every embeddable document is embedded. A document a peer
(a daemon, another backfill) held when the pass met it is not ours to embed: the peer may finish
it, or let it go unfinished (it was stopped, or lost its backend). Reporting at once would print
"pending 1024" and exit 0. So the backfill waits until the peer has let go of the documents it
passed over (`waiting_for_held`, then `held_released`), and runs the pass again for whatever the
peer left; that pass finds nothing if the peer finished them.

The wait is bounded by `[database] claim_lease`: a live peer finishes a batch well within it
(docs/operations.md asks for that), and a stalled one loses its session, and so its claims, when its
lease runs out. A claim held past that is not one we can wait out: the backfill reports how many
documents are still held (`held_timeout`) and exits 4, never 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from embedkeeper.logs import event
from embedkeeper.records import DocumentId
from embedkeeper.store.db import connect, mapped_errors
from embedkeeper.store.pass_io.claims import count_held_by_peers
from embedkeeper.sync.passes import PassContext, PassResult, run_pass

log = logging.getLogger(__name__)

POLL_S = 0.5


def run_until_released(
    ctx: PassContext,
    *,
    run: Callable[[PassContext], PassResult] = run_pass,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[PassResult, int]:
    """Run the pass, then, while it passed over documents a peer held, wait for the peer to let
    them go and run it again (a document the peer let go after the pass had walked past it is
    pending again). Returns the passes' combined result and how many documents are still held
    (0, unless the wait ran past claim_lease or was stopped)."""
    result = run(ctx)
    deadline = clock() + ctx.app.config.claim_lease_s
    while _should_wait(ctx, result):
        if clock() >= deadline:
            # Passes kept meeting held documents until the bound: we cannot vouch for them.
            event(
                log,
                logging.WARNING,
                "held_timeout",
                model=ctx.model.name,
                documents=len(result.held),
            )
            return result, len(result.held)
        still_held = _wait_released(ctx, result.held, deadline, clock)
        if still_held or ctx.stop.is_set():
            return result, still_held
        result = _merged(result, run(ctx))
    return result, 0


def _should_wait(ctx: PassContext, result: PassResult) -> bool:
    """Only a pass that walked everything (no stop, no --limit) vouches for the whole table."""
    finished = result.status == "ok" and result.stats.drained and ctx.options.limit is None
    return bool(result.held) and finished and not ctx.stop.is_set()


def _wait_released(
    ctx: PassContext, ids: Sequence[DocumentId], deadline: float, clock: Callable[[], float]
) -> int:
    """Poll pg_locks until no peer holds any of `ids`, the deadline passes or we are stopped;
    returns how many are still held."""
    model = ctx.pair.model_name
    started = clock()
    with (
        connect(ctx.app.url, timeout_s=ctx.app.config.connect_timeout_s) as conn,
        mapped_errors("waiting for documents another process holds"),
    ):
        held = waited = count_held_by_peers(conn, ctx.pair, ids)
        if held:
            event(
                log,
                logging.INFO,
                "waiting_for_held",
                model=model,
                documents=held,
                timeout_s=round(max(deadline - clock(), 0)),
            )
        while held and clock() < deadline and not ctx.stop.wait(POLL_S):
            held = count_held_by_peers(conn, ctx.pair, ids)
    if held and not ctx.stop.is_set():
        event(log, logging.WARNING, "held_timeout", model=model, documents=held)
    elif waited:
        event(log, logging.INFO, "held_released", model=model, waited_s=round(clock() - started, 1))
    return held


def _merged(first: PassResult, later: PassResult) -> PassResult:
    return PassResult(
        first.stats.merged(later.stats),
        first.deleted + later.deleted,
        later.status,
        later.held,
    )
