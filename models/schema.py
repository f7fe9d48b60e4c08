"""The schema embedkeeper's own tables live in: a module of its own, so that naming a table needs
no SQLAlchemy (a command that only reads and writes rows never imports it)."""

from __future__ import annotations

SCHEMA = "embedkeeper"
