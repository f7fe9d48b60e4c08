"""`embedkeeper drop SOURCE MODEL`: drop a pair's tables, view, indexes and rows
(store/pair/drop.py).

What a model change leaves behind once another model serves the source. A pair the config still
embeds is refused unless `--force` (the daemon would make it again and embed everything anew);
the pair that serves its source is always refused (`switch` first). It needs the owner of the
pair's tables: a least-privilege worker gets the command to run as the owner.
"""

from __future__ import annotations

import argparse

from embedkeeper.config import Config
from embedkeeper.errors import ConfigError
from embedkeeper.store.db import connect, database_url
from embedkeeper.store.pair.drop import drop_pair
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.serving.switches import serving_model
from embedkeeper.store.source.preflight import check_schema


def cmd_drop(args: argparse.Namespace, config: Config) -> int:
    source, model = args.source, args.model
    configured = {(s.source_name, m.name) for s, m in config.pairs()}
    if (source, model) in configured and not args.force:
        raise ConfigError(
            f"{source}/{model} is still in the config, so the daemon keeps it in sync (and would"
            f' make it again): take model "{model}" out of [[models]] (or its sources) first,'
            " or drop with --force"
        )
    names = PairNames.of(source, model)
    url = database_url(config)
    with connect(url, timeout_s=config.connect_timeout_s) as conn:
        check_schema(conn)
        dropped = drop_pair(conn, names, serving_model(conn, source))
    rows = ", ".join(f"{n} {table}" for table, n in dropped.rows.items() if n)
    tables = ", ".join(f"embedkeeper.{r}" for r in dropped.relations)
    print(f"dropped {source}/{model}: {tables}" + (f"; rows: {rows}" if rows else ""))
    if dropped.model_unregistered:
        print(f"model {model} has no pair left: its registry row is gone too")
    return 0
