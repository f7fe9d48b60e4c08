"""SIGTERM and SIGINT, handled in one place for the daemon and every one-shot command.

The first signal asks for a graceful stop: `stop` is set, no new batch is claimed, the batch in
flight is written and its run recorded. The second means "now": a one-shot command raises
KeyboardInterrupt (its `finally` blocks still run), the daemon exits at once (its scheduler
thread may be blocked in a pass). Claims die with the database session, so neither loses work.

A one-shot command stopped by a signal exits 128 + the signal's number (143 for SIGTERM, 130 for
SIGINT), the shell's convention, so a script or systemd can tell "stopped" from "broken" (1).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from embedkeeper.logs import event

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Received:
    """The first stopping signal, if one came."""

    signum: int | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal; SIGINT's 130 if none was recorded (a stop asked some other way)."""
        return 128 + (self.signum if self.signum is not None else signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A second signal: stop now. Carries the code to exit with (128 + that signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def stop_on_signals(
    stop: threading.Event,
    *,
    on_stop: Callable[[], None] | None = None,
    exit_on_second: bool = False,
) -> Received:
    """Install the handlers; `on_stop` runs after the first signal (in the signal handler, so it
    must not block). The returned record says which signal stopped us."""
    received = Received()

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            event(log, logging.WARNING, "stop_now", signal=name)
            if exit_on_second:
                os._exit(1)
            raise Interrupted(signum)
        event(log, logging.WARNING, "stopping", signal=name)
        received.signum = signum
        stop.set()
        if on_stop is not None:
            on_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return received
