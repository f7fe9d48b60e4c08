"""Retry decisions for transient failures (an outage of the database or the backend): pure."""

from __future__ import annotations

import random


def transient_delay_s(attempt: int, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to 1 s, then 2, 4 ... max_s."""
    ceiling = min(max_s, 2.0 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)
