"""The commands behind `embedkeeper <command>`, apart from `run` (the service)."""

from __future__ import annotations
