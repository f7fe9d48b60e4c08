"""`embedkeeper models`: each source's pairs, which one serves it, and the recent switches.

What to look at before `switch` (is the new pair complete?) and before `drop` (which pairs the
config no longer embeds, and what they weigh). A configured pair's coverage is measured as
`coverage` measures it (a scan of the source); a pair the database still holds but the config
no longer names has no coverage (the config's chunking settings are what make a record current),
only its size and last pass.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import psycopg

from embedkeeper.app import App, open_app
from embedkeeper.commands.switch import missing
from embedkeeper.config import Config
from embedkeeper.store.db import connect
from embedkeeper.store.pair.drop import recorded_pairs
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.report.coverage import Coverage
from embedkeeper.store.report.pair_sizes import PairFootprint, footprint
from embedkeeper.store.serving.switches import Switch, recent_switches, serving_model

RECENT_SWITCHES = 10


@dataclass(frozen=True, slots=True)
class PairRow:
    source: str
    model: str
    serving: bool
    coverage: Coverage | None  # None: not in the config
    footprint: PairFootprint

    def as_json(self) -> dict[str, Any]:
        cov, foot = self.coverage, self.footprint
        return {
            "source": self.source,
            "model": self.model,
            "serving": self.serving,
            "configured": cov is not None,
            "coverage_percent": cov.coverage_percent if cov else None,
            "missing": missing(cov) if cov else None,
            "embedded": cov.embedded if cov else None,
            "chunks": cov.chunks if cov else None,
            "size_bytes": foot.size_bytes,
            "last_pass_at": foot.last_pass_at.isoformat() if foot.last_pass_at else None,
            "last_pass_status": foot.last_status,
        }


def collect(
    app: App, conn: psycopg.Connection[Any], source: str | None
) -> tuple[list[PairRow], list[Switch]]:
    """Every pair of the config, then every other pair the database records (of `source`)."""
    chosen = app.chosen(source) if source else list(app.pairs.values())
    served = {s.source_name: serving_model(conn, s.source_name) for s in app.config.sources}
    rows = [
        PairRow(
            p.source_name,
            p.model_name,
            served.get(p.source_name) == p.model_name,
            app.coverage(conn, p),
            footprint(conn, p.names),
        )
        for p in chosen
    ]
    for s, m in recorded_pairs(conn):
        if (s, m) not in app.pairs and source in (None, s):
            serving = served.get(s, serving_model(conn, s)) == m
            rows.append(PairRow(s, m, serving, None, footprint(conn, PairNames.of(s, m))))
    return rows, recent_switches(conn, source, RECENT_SWITCHES)


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        rows, switches = collect(app, conn, args.source)
    if args.json:
        document = {
            "pairs": [row.as_json() for row in rows],
            "switches": [s.as_json() for s in switches],
        }
        print(json.dumps(document, indent=2))
    else:
        print(format_models(rows, switches))
    return 0


def format_models(rows: list[PairRow], switches: list[Switch]) -> str:
    """A table of pairs (`*` marks the serving one), then the switches, newest first."""
    header = ["source", "model", "serving", "coverage", "missing", "chunks", "size", "last pass"]
    body = [_cells(row) for row in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    if any(row.coverage is None for row in rows):
        lines.append(
            "(not in config: the config no longer embeds it; `embedkeeper drop SOURCE MODEL`"
            " frees its space)"
        )
    lines.append("")
    lines.append("recent switches:" if switches else "no switches yet")
    for s in switches:
        came = s.from_model or "(first, by migrate)"
        forced = f", forced with {s.missing} missing" if s.missing else ""
        when = s.switched_at.strftime("%Y-%m-%d %H:%M:%S%z")
        lines.append(f"  {when}  {s.source}: {came} -> {s.to_model}  by {s.switched_by}{forced}")
    return "\n".join(lines)


def _cells(row: PairRow) -> list[str]:
    cov, foot = row.coverage, row.footprint
    last = "never"
    if foot.last_pass_at is not None:
        last = f"{foot.last_pass_at.strftime('%Y-%m-%d %H:%M:%S%z')} {foot.last_status}"
    return [
        row.source,
        row.model,
        "*" if row.serving else "",
        f"{cov.coverage_percent:.2f}%" if cov else "not in config",
        str(missing(cov)) if cov else "-",
        str(cov.chunks) if cov else "-",
        _size(foot.size_bytes),
        last,
    ]


def _size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
