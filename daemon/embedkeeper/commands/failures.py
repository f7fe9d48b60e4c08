"""`embedkeeper failures`: list the documents in review, re-queue them or ignore them."""

from __future__ import annotations

import argparse

from embedkeeper.app import open_app
from embedkeeper.config import Config
from embedkeeper.store.db import connect
from embedkeeper.store.report.failures import (
    Failure,
    PairFailures,
    ignore_failures,
    list_failures,
    retry_failures,
)


def format_failures(rows: list[Failure]) -> str:
    if not rows:
        return "no failures"
    lines = ["model\tdocument_id\tattempts\tstatus\tlast_seen\terror"]
    for f in rows:
        message = f.message.replace("\n", " ")[:200]
        seen = f.last_seen.isoformat(timespec="seconds")
        lines.append(
            f"{f.model}\t{f.document_id}\t{f.attempts}\t{f.status}\t{seen}\t"
            f"{f.error_class}: {message}"
        )
    return "\n".join(lines)


def cmd_failures(args: argparse.Namespace, config: Config) -> int:
    chosen = config.chosen_pairs(args.source, args.model)  # an unknown name is an error
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        # a pair whose tables are not made yet has no failures: nothing to make for a read
        pairs = [
            PairFailures(config.pair_label(p.source, p.model), p.statements.failures, p.key_type)
            for p in (app.pair(m, s) for s, m in chosen)
            if app.is_made(conn, p)
        ]
        if args.action == "list":
            found = [f for p in pairs for f in list_failures(conn, p, args.ids, args.all)]
            print(format_failures(found))
        elif args.action == "retry":
            count = sum(retry_failures(conn, p, args.ids) for p in pairs)
            print(f"re-queued {count} document(s); the next pass or backfill embeds them")
        else:
            count = sum(ignore_failures(conn, p, args.ids) for p in pairs)
            print(f"ignored {count} document(s); they no longer count as failed")
    return 0
