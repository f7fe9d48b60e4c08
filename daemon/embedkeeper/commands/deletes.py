"""`embedkeeper deletes`: turn the opt-in delete log's trigger on the source on or off, or say
whether it is on."""

from __future__ import annotations

import argparse
from typing import Any

import psycopg

from embedkeeper.app import open_app
from embedkeeper.config import Config, SourceConfig
from embedkeeper.store.db import connect, mapped_errors
from embedkeeper.store.pass_io import delete_log


def cmd_deletes(args: argparse.Namespace, config: Config) -> int:
    app = open_app(config)
    sources = [config.source_named(args.source)] if args.source else list(config.sources)
    with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
        for source in sources:
            _deletes(conn, args.action, source)
    return 0


def _deletes(conn: psycopg.Connection[Any], action: str, source: SourceConfig) -> None:
    name = delete_log.log_name(source)
    if action == "track":
        with mapped_errors(f"creating the delete log's trigger on {name}"):
            delete_log.track(conn, source)
        print(
            f"deletes on {name} are now logged (trigger {delete_log.TRIGGER}); the next pass"
            " after a delete prunes in full once, later ones prune only the logged keys"
        )
    elif action == "untrack":
        with mapped_errors(f"dropping the delete log's trigger on {name}"):
            delete_log.untrack(conn, source)
        print(f"deletes on {name} are no longer logged; passes prune in full after deletes")
    else:
        tracking = delete_log.is_tracking(conn, source)
        print(f"{name}: deletes {'logged' if tracking else 'not logged'}")
