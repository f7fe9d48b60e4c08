"""`embedkeeper index`: create, list, drop or restore a model's HNSW index."""

from __future__ import annotations

import argparse

from embedkeeper.app import open_app
from embedkeeper.config import Config
from embedkeeper.errors import UsageError
from embedkeeper.store.db import connect
from embedkeeper.store.index.index_build import BuildSettings, HnswParams
from embedkeeper.store.index.vector_index import (
    VectorIndex,
    create_index,
    drop_indexes,
    list_indexes,
    restore_indexes,
)


def format_indexes(indexes: list[VectorIndex]) -> str:
    if not indexes:
        return "no vector index (create one: embedkeeper index create --model NAME)"
    rows = [("model", "index", "state", "size", "definition")]
    for i in indexes:
        size = "" if i.size_bytes is None else f"{i.size_bytes / 2**20:.1f} MB"
        rows.append((i.model, i.name, i.state, size, i.definition))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    if args.action in ("create", "drop") and not args.model:
        raise UsageError(f"index {args.action} needs --model NAME")
    settings = BuildSettings(memory_mb=args.maintenance_work_mem, workers=args.workers)
    params = HnswParams(args.opclass, args.m, args.ef_construction)
    params.check()
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        targets = [app.index_target(conn, pair) for pair in app.chosen(args.source, args.model)]
        if args.action == "create":
            for target in targets:
                name, built = create_index(conn, target, params, settings)
                print(f"{'created' if built else 'exists:'} embedkeeper.{name}")
        elif args.action == "drop":
            for target in targets:
                names = drop_indexes(conn, target)
                print("dropped " + (", ".join(names) if names else "nothing: no vector index"))
        elif args.action == "restore":
            for target in targets:
                done = restore_indexes(conn, target, settings)
                print(
                    f"{target.model}: " + ("restored" if done else "left to the running backfill")
                )
        else:
            print(format_indexes([i for t in targets for i in list_indexes(conn, t)]))
    return 0
