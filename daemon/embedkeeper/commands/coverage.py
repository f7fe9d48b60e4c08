"""`embedkeeper coverage`: how much of the source has current vectors, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from embedkeeper.app import App, open_app
from embedkeeper.commands import chosen_models
from embedkeeper.config import Config, ModelConfig
from embedkeeper.store.coverage import Coverage, format_table, measure
from embedkeeper.store.db import connect


def coverage_of(app: App, models: Sequence[ModelConfig]) -> list[Coverage]:
    with connect(app.url, timeout_s=app.config.connect_timeout_s) as conn:
        return [measure(conn, app.queries, m.name) for m in models]


def cmd_coverage(args: argparse.Namespace, config: Config) -> int:
    app = open_app(config)
    rows = coverage_of(app, chosen_models(config, args.model))
    if args.json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0
