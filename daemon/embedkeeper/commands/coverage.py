"""`embedkeeper coverage`: how much of the source has current vectors, as a table or JSON.

The table is also what `backfill` prints when it ends.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from embedkeeper.app import App, open_app
from embedkeeper.config import Config
from embedkeeper.store.db import connect
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.report.coverage import Coverage

COLUMNS = (
    "model",
    "total",
    "embedded",
    "stale",
    "pending",
    "failed",
    "ignored",
    "skipped",
    "chunks",
    "truncated",
)


def coverage_of(app: App, pairs: Sequence[Pair]) -> list[Coverage]:
    with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
        return [app.coverage(conn, pair) for pair in pairs]


def format_table(rows: list[Coverage]) -> str:
    """One line per pair; a `source` column first where the rows come from several sources."""
    columns = COLUMNS if len({r.source for r in rows}) <= 1 else ("source", *COLUMNS)
    header = [*columns, "coverage"]
    body = [[str(getattr(r, c)) for c in columns] + [f"{r.coverage_percent:.2f}%"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return "\n".join([line(header), *(line(b) for b in body)])


def cmd_coverage(args: argparse.Namespace, config: Config) -> int:
    app = open_app(config)
    rows = coverage_of(app, app.chosen(args.source, args.model))
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0
