"""The service: the daemon's lifecycle, its scheduler, signals, sd_notify and metrics."""

from __future__ import annotations
