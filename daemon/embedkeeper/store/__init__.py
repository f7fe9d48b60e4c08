"""The store: every statement embedkeeper runs, on the user's table and on its own schema, with
the driver's errors mapped to ours at this boundary (db.mapped_errors)."""

from __future__ import annotations
