"""Backfill progress: a bar with docs/s and ETA on a terminal; otherwise a log line every 10 s and
at every tenth of the way (so a log shows whether the rate holds from start to end)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from embedkeeper.logs import event
from embedkeeper.records import RunStats

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, model: str, total: int, *, interval_s: float = 10.0) -> None:
        self.model = model
        self.total = total
        self.interval_s = interval_s
        self.last_log = time.monotonic()
        self.last_tenth = 0
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=model, unit="doc", dynamic_ncols=True)

    def __call__(self, stats: RunStats) -> None:
        done = stats.done
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix(failed=stats.failed, refresh=False)
            return
        now = time.monotonic()
        tenth = 10 * done // self.total if self.total else 0
        if now - self.last_log >= self.interval_s or tenth > self.last_tenth:
            self.last_log, self.last_tenth = now, tenth
            left = max(self.total - done, 0)
            eta = round(left / stats.docs_per_s) if stats.docs_per_s > 0 else "unknown"
            event(
                log,
                logging.INFO,
                "progress",
                model=self.model,
                done=done,
                total=self.total,
                failed=stats.failed,
                docs_per_s=round(stats.docs_per_s, 1),
                eta_s=eta,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
