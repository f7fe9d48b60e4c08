"""The `embedkeeper` command: argparse subcommands and exit codes.

Exit codes: 0 every embeddable document is embedded; 1 fatal (config, database, model);
2 usage; 3 finished, but some documents are in review; 5 `switch` refused: the pair lacks
documents; 128 + the signal (143 SIGTERM, 130 SIGINT)
a one-shot command stopped by a signal. An EmbedkeeperError becomes one line on
stderr (the traceback too with -v); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from embedkeeper import __version__
from embedkeeper.config import Config, load_config
from embedkeeper.errors import EmbedkeeperError, SchemaMissing, SourceNotFound, UsageError
from embedkeeper.logs import setup_logging

log = logging.getLogger("embedkeeper")

Command = Callable[[argparse.Namespace, Config], int]


# Each command's module is imported only when that command runs: `embedkeeper --help`, a usage
# error or a config error needs neither the driver nor the sync pass (nor torch).
HANDLERS = {
    "migrate": "embedkeeper.commands.migrate:cmd_migrate",
    "backfill": "embedkeeper.commands.backfill:cmd_backfill",
    "run": "embedkeeper.commands.run:cmd_run",
    "coverage": "embedkeeper.commands.coverage:cmd_coverage",
    "stats": "embedkeeper.commands.stats:cmd_stats",
    "failures": "embedkeeper.commands.failures:cmd_failures",
    "index": "embedkeeper.commands.index:cmd_index",
    "deletes": "embedkeeper.commands.deletes:cmd_deletes",
    "search": "embedkeeper.commands.search:cmd_search",
    "models": "embedkeeper.commands.models:cmd_models",
    "switch": "embedkeeper.commands.switch:cmd_switch",
    "drop": "embedkeeper.commands.drop:cmd_drop",
    "demo": "embedkeeper.commands.demo:cmd_demo",
}


def handler_of(command: str) -> Command:
    module, _, name = HANDLERS[command].partition(":")
    handler: Command = getattr(importlib.import_module(module), name)
    return handler


def build_parser() -> argparse.ArgumentParser:
    # `demo` takes every option but --config: it always uses its own setup (demo_config).
    no_config = argparse.ArgumentParser(add_help=False)
    no_config.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="where the embedded PostgreSQL keeps its data (when no database url is set)",
    )
    no_config.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logs and tracebacks",
    )
    no_config.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS)
    common = argparse.ArgumentParser(add_help=False, parents=[no_config])
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="config file (default ./embedkeeper.toml, then /etc/embedkeeper/embedkeeper.toml)",
    )

    parser = argparse.ArgumentParser(
        prog="embedkeeper",
        parents=[common],
        description="Keep pgvector embeddings in step with the documents in PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"embedkeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, config: bool = True) -> argparse.ArgumentParser:
        parents = [common if config else no_config]
        return sub.add_parser(name, parents=parents, help=help_text, description=help_text)

    p = add("migrate", "create or upgrade embedkeeper's schema (alembic upgrade head)")
    p.add_argument(
        "--reembed",
        nargs=2,
        action="append",
        metavar=("SOURCE", "MODEL"),
        help="adopt the pair's changed vector settings (prefix, normalize, model, ...) in place:"
        " every document is embedded again, and search mixes the two vector spaces until then"
        " (repeat for each pair of the model)",
    )
    p = add("backfill", "embed every pending document, then exit")
    p.add_argument("--model", help="only this [[models]] name")
    p.add_argument("--source", help="only this source (its [source] or [[sources]] name)")
    p.add_argument("--limit", type=_positive, help="stop after N documents")
    p.add_argument(
        "--defer-index",
        action="store_true",
        help="drop each model's vector indexes for the backfill and rebuild them after it",
    )
    p = add("run", "the daemon: a pass on the [schedule], until SIGTERM")
    p.add_argument(
        "--metrics-port", type=_positive, help="serve /metrics and /healthz on this port"
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one scheduled pass per model (and the sweep if due), then exit (for cron)",
    )
    p = add("coverage", "how much of each source has current vectors, per model")
    p.add_argument("--json", action="store_true", help="a JSON list, one object per pair")
    p.add_argument("--model", help="only this [[models]] name")
    p.add_argument("--source", help="only this source (its [source] or [[sources]] name)")
    p = add("stats", "throughput per model: passes, docs/s, tokens/s, backlog and its ETA")
    p.add_argument("--json", action="store_true", help="a JSON list, one object per pair")
    p.add_argument("--model", help="only this [[models]] name")
    p.add_argument("--source", help="only this source (its [source] or [[sources]] name)")
    p.add_argument("--since", type=_duration, help="the window, e.g. 1h or 7d (default 24h)")
    p = add("search", "the documents nearest to a question, with the model that embedded them")
    p.add_argument("query", metavar="QUESTION", help="the text to search for")
    p.add_argument(
        "--model",
        help="the [[models]] name (default: the model that serves the source, see"
        " `embedkeeper models`)",
    )
    p.add_argument(
        "--source",
        help="the source to search (default: with --model, the first the model embeds; else"
        " the first)",
    )
    p.add_argument("-k", type=_positive, default=10, help="how many documents (default 10)")
    p.add_argument(
        "--chunks", action="store_true", help="the k nearest chunks (default: each document once)"
    )
    p.add_argument("--json", action="store_true", help="a JSON list, one object per document")
    p.add_argument(
        "--ef-search",
        type=_positive,
        help="the HNSW scan's candidate list: more finds more of the true nearest, slower"
        " (default 200, at most 1000)",
    )
    p.add_argument(
        "--vector-only",
        action="store_true",
        help="rank by the vectors alone, where the source has full_text (default: both)",
    )
    p = add("models", "each source's pairs: coverage, size, last pass, which serves; switches")
    p.add_argument("--json", action="store_true", help="pairs and switches as a JSON object")
    p.add_argument("--source", help="only this source (its [source] or [[sources]] name)")
    p = add("switch", "make another model's pair serve a source (embedkeeper.<source>)")
    p.add_argument("source", metavar="SOURCE", help="the source's name")
    p.add_argument("model", metavar="MODEL", help="the [[models]] name to serve it")
    p.add_argument("--force", action="store_true", help="switch even if the pair lacks documents")
    p = add("drop", "drop a pair's tables, view, indexes and rows (as the owner)")
    p.add_argument("source", metavar="SOURCE", help="the source's name")
    p.add_argument("model", metavar="MODEL", help="the model's name")
    p.add_argument(
        "--force", action="store_true", help="drop it even though the config still embeds it"
    )
    p = add("failures", "documents in review: list, retry or ignore them")
    p.add_argument("action", choices=("list", "retry", "ignore"))
    p.add_argument("ids", nargs="*", metavar="ID", help="document ids (default: all)")
    p.add_argument("--model", help="only this [[models]] name")
    p.add_argument("--source", help="only this source (its [source] or [[sources]] name)")
    p.add_argument("--all", action="store_true", help="list: also those retrying or ignored")
    _add_index_parser(add("index", "a model's HNSW index: create, status, drop, restore"))
    p = add(
        "deletes",
        "log the source's deletes with a trigger (opt-in), so passes prune only deleted keys",
    )
    p.add_argument("action", choices=("track", "untrack", "status"))
    p.add_argument("--source", help="only this source (its [source] or [[sources]] name)")
    add(
        "demo",
        "load Python's docs into the embedded PostgreSQL and backfill them (no config file: "
        "it always uses the embedded database and the demo table)",
        config=False,
    )
    return parser


def _add_index_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("create", "status", "drop", "restore"))
    p.add_argument("--model", help="the [[models]] name (create and drop need one)")
    p.add_argument("--source", help="the source (default: every source the model embeds)")
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


def _duration(text: str) -> float:
    from embedkeeper.config.values import parse_duration

    try:
        return parse_duration(text, "--since")
    except EmbedkeeperError as exc:
        raise argparse.ArgumentTypeError('a duration such as "30m", "24h" or "7d"') from exc


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
            if getattr(args, "config", None) is not None:  # given before the command
                raise UsageError("demo takes no --config: it always uses the demo setup")
            config = demo_config(overrides)
        else:
            config = load_config(getattr(args, "config", None), overrides=overrides)
        if not verbose:
            setup_logging(config.logging.level, getattr(args, "log_format", config.logging.format))
        return handler_of(args.command)(args, config)
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
    except KeyboardInterrupt as exc:
        # A second signal (service.signals.Interrupted) carries 128 + its number; a bare Ctrl-C
        # before the handlers are installed is SIGINT's 130.
        print("embedkeeper: interrupted", file=sys.stderr)
        code: int = getattr(exc, "exit_code", 130)
        return code


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
