"""The `embedkeeper` command: argparse subcommands and exit codes.

Exit codes: 0 every embeddable document is embedded; 1 fatal (config, database, model);
2 usage; 3 finished, but some documents are in review. An EmbedkeeperError becomes one line on
stderr (the traceback too with -v); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from embedkeeper import __version__
from embedkeeper.config import Config, load_config
from embedkeeper.errors import EmbedkeeperError, SchemaMissing, SourceNotFound, UsageError
from embedkeeper.logs import event, mask_url, setup_logging

log = logging.getLogger("embedkeeper")

Command = Callable[[argparse.Namespace, Config], int]


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.commands.migrate import migrate
    from embedkeeper.store.db import database_url

    url = database_url(config)
    revision = migrate(url, config.source, timeout_s=config.connect_timeout_s)
    print(f"embedkeeper schema at revision {revision} in {mask_url(url)}")
    return 0


def _models(config: Config, name: str | None) -> list:  # type: ignore[type-arg]
    return [config.model(name)] if name else list(config.models)


def cmd_backfill(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.app import open_app
    from embedkeeper.commands.backfill import backfill
    from embedkeeper.service.signals import stop_on_signals
    from embedkeeper.store.coverage import format_table

    models = _models(config, args.model)
    app = open_app(config)
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        result = backfill(app, models, limit=args.limit, stop=stop, defer_index=args.defer_index)
    finally:
        app.close()
    for name, outcome in result.results.items():
        s = outcome.stats
        print(
            f"{name}: {s.ok} embedded, {s.failed} failed, {s.skipped} skipped, "
            f"{outcome.deleted} deleted, {s.tokens} tokens in {s.elapsed_s:.1f} s "
            f"({s.docs_per_s:.1f} docs/s, {s.tokens_per_s:.0f} tokens/s)"
        )
    print(format_table(result.coverage))
    if result.interrupted:
        print("interrupted: the batch in flight was finished or released", file=sys.stderr)
        return 1
    if result.exit_code == 3:
        print("some documents are in review: see `embedkeeper failures list`", file=sys.stderr)
    return result.exit_code


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.service.lifecycle import run_daemon, run_once

    if args.once:
        return run_once(config)
    return run_daemon(config, metrics_port=args.metrics_port)


def cmd_coverage(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.app import open_app
    from embedkeeper.commands.backfill import coverage_of
    from embedkeeper.store.coverage import format_table

    app = open_app(config)
    rows = coverage_of(app, _models(config, args.model))
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


def cmd_failures(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.app import open_app
    from embedkeeper.store.db import connect
    from embedkeeper.store.failures import (
        format_failures,
        ignore_failures,
        list_failures,
        retry_failures,
    )

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


def cmd_deletes(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.app import open_app
    from embedkeeper.store import delete_log
    from embedkeeper.store.db import connect, mapped_errors

    app = open_app(config)
    source = config.source
    name = delete_log.log_name(source)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        if args.action == "track":
            with mapped_errors(f"creating the delete log's trigger on {name}"):
                delete_log.track(conn, source)
            print(
                f"deletes on {name} are now logged (trigger {delete_log.TRIGGER}); the next pass"
                " after a delete prunes in full once, later ones prune only the logged keys"
            )
        elif args.action == "untrack":
            with mapped_errors(f"dropping the delete log's trigger on {name}"):
                delete_log.untrack(conn, source)
            print(f"deletes on {name} are no longer logged; passes prune in full after deletes")
        else:
            tracking = delete_log.is_tracking(conn, source)
            print(f"{name}: deletes {'logged' if tracking else 'not logged'}")
    return 0


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.app import open_app
    from embedkeeper.store.db import connect
    from embedkeeper.store.vector_index import (
        BuildSettings,
        HnswParams,
        create_index,
        drop_indexes,
        format_indexes,
        list_indexes,
        restore_indexes,
    )

    if args.action in ("create", "drop") and not args.model:
        raise UsageError(f"index {args.action} needs --model NAME")
    models = _models(config, args.model)  # an unknown name is an error
    settings = BuildSettings(memory_mb=args.maintenance_work_mem, workers=args.workers)
    params = HnswParams(args.opclass, args.m, args.ef_construction)
    params.check()
    app = open_app(config)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        if args.action == "create":
            name, built = create_index(conn, models[0], params, settings)
            print(f"{'created' if built else 'exists:'} embedkeeper.{name}")
        elif args.action == "drop":
            names = drop_indexes(conn, args.model)
            print("dropped " + (", ".join(names) if names else "nothing: no vector index"))
        elif args.action == "restore":
            for model in models:
                done = restore_indexes(conn, model.name, settings)
                print(f"{model.name}: " + ("restored" if done else "left to the running backfill"))
        else:
            print(format_indexes(list_indexes(conn, args.model)))
    return 0


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from embedkeeper.commands.demo import load_demo_corpus
    from embedkeeper.commands.migrate import migrate
    from embedkeeper.store.db import connect, database_url

    url = database_url(config)
    with connect(url, timeout_s=config.connect_timeout_s, register=False) as conn:
        count = load_demo_corpus(conn)
    event(log, logging.INFO, "demo_corpus", documents=count, database=mask_url(url))
    migrate(url, config.source, timeout_s=config.connect_timeout_s)
    return cmd_backfill(argparse.Namespace(model=None, limit=None, defer_index=False), config)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="config file (default ./embedkeeper.toml, then /etc/embedkeeper/embedkeeper.toml)",
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where the embedded PostgreSQL keeps its data (when no database url is set)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logs and tracebacks",
    )
    common.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="embedkeeper",
        parents=[common],
        description="Keep pgvector embeddings in step with the documents in PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"embedkeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("migrate", cmd_migrate, "create or upgrade embedkeeper's schema (alembic upgrade head)")
    p = add("backfill", cmd_backfill, "embed every pending document, then exit")
    p.add_argument("--model", help="only this [[models]] name")
    p.add_argument("--limit", type=_positive, help="stop after N documents")
    p.add_argument(
        "--defer-index",
        action="store_true",
        help="drop each model's vector indexes for the backfill and rebuild them after it",
    )
    p = add("run", cmd_run, "the daemon: a pass on the [schedule], until SIGTERM")
    p.add_argument(
        "--metrics-port", type=_positive, help="serve /metrics and /healthz on this port"
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one scheduled pass per model (and the sweep if due), then exit (for cron)",
    )
    p = add("coverage", cmd_coverage, "how much of the source has current vectors")
    p.add_argument("--json", action="store_true", help="a JSON list, one object per model")
    p.add_argument("--model", help="only this [[models]] name")
    p = add("failures", cmd_failures, "documents in review: list, retry or ignore them")
    p.add_argument("action", choices=("list", "retry", "ignore"))
    p.add_argument("ids", nargs="*", metavar="ID", help="document ids (default: all)")
    p.add_argument("--model", help="only this [[models]] name")
    p.add_argument("--all", action="store_true", help="list: also those retrying or ignored")
    _add_index_parser(
        add("index", cmd_index, "a model's HNSW index: create, status, drop, restore")
    )
    p = add(
        "deletes",
        cmd_deletes,
        "log the source's deletes with a trigger (opt-in), so passes prune only deleted keys",
    )
    p.add_argument("action", choices=("track", "untrack", "status"))
    add("demo", cmd_demo, "load Python's docs into the embedded PostgreSQL and backfill them")
    return parser


def _add_index_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("create", "status", "drop", "restore"))
    p.add_argument("--model", help="the [[models]] name (create and drop need one)")
    p.add_argument("--opclass", choices=("cosine", "l2", "ip"), default="cosine")
    p.add_argument("--m", type=_positive, default=16, help="hnsw m (default 16)")
    p.add_argument(
        "--ef-construction", type=_positive, default=64, help="hnsw ef_construction (default 64)"
    )
    p.add_argument(
        "--maintenance-work-mem",
        type=_megabytes,
        help="memory for the build, e.g. 2GB (default: the graph's estimated size, 64MB to 4GB)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="max_parallel_maintenance_workers for the build (default 2)",
    )


def _megabytes(text: str) -> int:
    units = {"MB": 1, "GB": 1024, "TB": 1024 * 1024}
    for unit, factor in units.items():
        if text.upper().endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(text[: -len(unit)]) * factor
    raise argparse.ArgumentTypeError("a size such as 512MB or 2GB")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    setup_logging("DEBUG" if verbose else "INFO", getattr(args, "log_format", "text"))
    config: Config | None = None
    try:
        overrides = {}
        if getattr(args, "data_dir", None):
            overrides["EMBEDKEEPER_DATA_DIR"] = str(args.data_dir)
        if args.command == "demo":
            config = demo_config(overrides)
        else:
            config = load_config(getattr(args, "config", None), overrides=overrides)
        if not verbose:
            setup_logging(config.logging.level, getattr(args, "log_format", config.logging.format))
        code: int = args.handler(args, config)
        return code
    except EmbedkeeperError as exc:
        if verbose:
            log.exception("fatal")
        hint = ""
        demo_setup = config is not None and config.is_demo
        if demo_setup and isinstance(exc, SchemaMissing | SourceNotFound):
            hint = " (no config file was found, so this is the demo setup: run `embedkeeper demo`"
            hint += " first, or write an embedkeeper.toml)"
        print(f"embedkeeper: error: {exc}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("embedkeeper: interrupted", file=sys.stderr)
        return 130


def demo_config(overrides: dict[str, str]) -> Config:
    """The demo always uses the embedded PostgreSQL, whatever database URL the environment has."""
    import os

    from embedkeeper.config import parse_config

    env = {
        k: v for k, v in os.environ.items() if k not in ("EMBEDKEEPER_DATABASE_URL", "DATABASE_URL")
    }
    return parse_config({}, {**env, **overrides})


if __name__ == "__main__":
    sys.exit(main())
