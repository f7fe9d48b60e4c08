"""How far a pass has come: a bar with docs/s and ETA on a terminal; otherwise a log line at
every tenth of the way and whenever `interval_s` has passed without one (a timer of its own, so
a slow slice or a model that stalls still leaves a line), so a log shows whether the rate holds
from start to end.

It moves per slice the model finishes (a request of `request_size` documents), not per claimed
batch: a batch of 1,024 on CPU takes a minute, and a bar that jumps from 0 to 1,024 says nothing
meanwhile. Slices are counted as they leave the model; the written counts catch up behind them
(the batch is written while the next one is embedded), so what is shown is the larger of the two.
Slices finish on the backend's threads and batches on the writer's: one lock guards the counts.

Once a written batch kept stored vectors (chunks whose passage the document already had), the line
says so: `reused_chunks` and `reused_pct`, the share of the pass's tokens that were not sent.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from embedkeeper.logs import event
from embedkeeper.records import RunStats

log = logging.getLogger(__name__)


def eta_s(done: int, total: int | None, elapsed_s: float) -> int | None:
    """Seconds left at the rate so far; None while there is no rate (or no total) to go by."""
    if total is None or done <= 0 or elapsed_s <= 0:
        return None
    return round(max(total - done, 0) * elapsed_s / done)


def reused_percent(reused_tokens: int, embedded_tokens: int) -> int | None:
    """The share of the tokens that were reused rather than sent, in whole percent; None when
    there were none. Never 0 or 100 unless it is exactly so: any reuse shows, and so does any
    token sent."""
    total = reused_tokens + embedded_tokens
    if total <= 0:
        return None
    share = round(100 * reused_tokens / total)
    return max(1, min(99, share)) if 0 < reused_tokens < total else share


class Progress:
    """One pass's progress. `total` is what the pass is expected to do (a backfill knows it from
    coverage; a scheduled pass does not, and logs no ETA). `bar`: None draws one when stderr is
    a terminal."""

    def __init__(
        self,
        model: str,
        total: int | None,
        *,
        interval_s: float = 10.0,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.total = total
        self.interval_s = interval_s
        self.clock = clock
        self.started = self.last_log = clock()
        self.sliced = 0  # documents the model has finished
        self.written = 0  # documents written, failed or skipped (RunStats.done)
        self.failed = 0
        self.tokens = self.reused_chunks = self.reused_tokens = 0  # of the batches written
        self.last_tenth = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._bar: Any = None
        self._timer: threading.Thread | None = None
        if sys.stderr.isatty() if bar is None else bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=model, unit="doc", dynamic_ncols=True)
        else:
            self._timer = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._timer.start()

    @property
    def done(self) -> int:
        done = max(self.sliced, self.written)
        return done if self.total is None else min(done, self.total)

    def on_slice(self, count: int) -> None:
        """The model finished `count` documents (not yet written)."""
        with self._lock:
            self.sliced += count
            self._show(timed=False)

    def on_batch(self, stats: RunStats) -> None:
        """A batch was written; `stats` are the pass's totals so far."""
        with self._lock:
            self.written, self.failed = stats.done, stats.failed
            self.tokens, self.reused_chunks = stats.tokens, stats.reused_chunks
            self.reused_tokens = stats.reused_tokens
            self._show(timed=False)

    def close(self) -> None:
        self._closed.set()
        if self._timer is not None:
            self._timer.join()
        if self._bar is not None:
            self._bar.close()

    def _tick(self) -> None:
        """A line once `interval_s` has passed since the last one, whoever logged it."""
        wait_s = self.interval_s
        while not self._closed.wait(wait_s):
            with self._lock:
                wait_s = self.last_log + self.interval_s - self.clock()
                if wait_s <= 0:
                    self._show(timed=True)
                    wait_s = self.interval_s

    def _show(self, *, timed: bool) -> None:
        done = self.done
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix(failed=self.failed, **self._reused(), refresh=False)
            return
        tenth = 10 * done // self.total if self.total else 0
        if not timed and tenth <= self.last_tenth:
            return
        self.last_tenth = max(tenth, self.last_tenth)
        self.last_log = self.clock()
        elapsed_s = self.last_log - self.started
        fields: dict[str, object] = {"model": self.model, "done": done}
        if self.total is not None:
            fields["total"] = self.total
        eta = eta_s(done, self.total, elapsed_s)
        fields.update(
            failed=self.failed,
            docs_per_s=round(done / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            elapsed_s=round(elapsed_s),
        )
        if self.total is not None:
            fields["eta_s"] = eta if eta is not None else "unknown"
        fields.update(self._reused())
        event(log, logging.INFO, "progress", **fields)

    def _reused(self) -> dict[str, object]:
        """The reuse so far, once there is some: chunks kept, and their share of the tokens."""
        if self.reused_chunks <= 0:
            return {}
        return {
            "reused_chunks": self.reused_chunks,
            "reused_pct": reused_percent(self.reused_tokens, self.tokens),
        }
