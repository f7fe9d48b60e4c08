"""SIGTERM and SIGINT, handled in one place for the daemon and every one-shot command.

The first signal asks for a graceful stop: `stop` is set, no new batch is claimed, the batch in
flight is written and its run recorded. The second means "now": a one-shot command raises
KeyboardInterrupt (its `finally` blocks still run), the daemon exits at once (its scheduler
thread may be blocked in a pass). Claims die with the database session, so neither loses work.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from embedkeeper.logs import event

log = logging.getLogger(__name__)


def stop_on_signals(
    stop: threading.Event,
    *,
    on_stop: Callable[[], None] | None = None,
    exit_on_second: bool = False,
) -> None:
    """Install the handlers; `on_stop` runs after the first signal (in the signal handler, so it
    must not block)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            event(log, logging.WARNING, "stop_now", signal=name)
            if exit_on_second:
                os._exit(1)
            raise KeyboardInterrupt
        event(log, logging.WARNING, "stopping", signal=name)
        stop.set()
        if on_stop is not None:
            on_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
