"""`embedkeeper failures`: list the documents in review, re-queue them or ignore them."""

from __future__ import annotations

import argparse

from embedkeeper.app import open_app
from embedkeeper.config import Config
from embedkeeper.store.db import connect
from embedkeeper.store.failures import Failure, ignore_failures, list_failures, retry_failures


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
    if args.model:
        config.model(args.model)  # an unknown name is an error, not an empty list
    app = open_app(config)
    id_type = app.queries.id_type
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        if args.action == "list":
            print(format_failures(list_failures(conn, id_type, args.model, args.ids, args.all)))
        elif args.action == "retry":
            count = retry_failures(conn, id_type, args.model, args.ids)
            print(f"re-queued {count} document(s); the next pass or backfill embeds them")
        else:
            count = ignore_failures(conn, id_type, args.model, args.ids)
            print(f"ignored {count} document(s); they no longer count as failed")
    return 0
