"""`embedkeeper switch SOURCE MODEL`: make another model's pair serve the source.

The serving view embedkeeper.<source> is what applications search (store/serving/). A switch
onto a pair that lacks documents would make search miss them, so it is refused, with the count,
until the pair's coverage is 100% (`--force` switches anyway, and the history records how many
it lacked). The view is replaced in one transaction with the history's row: readers see the old
pair or the new, never neither.
"""

from __future__ import annotations

import argparse

from embedkeeper.app import open_app
from embedkeeper.config import Config
from embedkeeper.errors import EmbedkeeperError, NotOwner, SchemaMissing
from embedkeeper.store.db import connect
from embedkeeper.store.report.coverage import Coverage
from embedkeeper.store.serving.switches import serving_model, switch_to

EXIT_INCOMPLETE = 5


class IncompletePair(EmbedkeeperError):
    """The pair lacks documents; backfill it, or switch with --force."""

    exit_code = EXIT_INCOMPLETE


def missing(coverage: Coverage) -> int:
    """The embeddable documents without a current vector: pending, stale, in review, ignored."""
    return max(coverage.total - coverage.skipped - (coverage.embedded - coverage.stale), 0)


def cmd_switch(args: argparse.Namespace, config: Config) -> int:
    source = config.source_named(args.source)
    model = config.model(args.model)
    app = open_app(config)
    name = source.source_name
    try:
        pair = app.pair(model, source)
        with connect(app.url, timeout_s=config.connect_timeout_s) as conn:
            current = serving_model(conn, name)
            if current is None:
                raise SchemaMissing(
                    f'source "{name}" has no serving view yet; run `embedkeeper migrate` (as the'
                    " owner of schema embedkeeper)"
                )
            if current == model.name:
                print(f"source {name}: model {model.name} serves embedkeeper.{name} already")
                return 0
            coverage = app.coverage(conn, pair) if app.is_made(conn, pair) else None
            lacking = None if coverage is None else missing(coverage)
            if lacking != 0 and not args.force:
                raise IncompletePair(_refusal(coverage, lacking, name, model.name))
            try:
                switch_to(conn, pair.names, expected=current, missing=lacking or 0)
            except NotOwner as exc:
                raise NotOwner(
                    f"{exc}: `embedkeeper switch {name} {model.name}`"
                    + (" --force" if args.force else "")
                ) from exc
    finally:
        app.close()
    forced = f" (forced: {lacking} documents missing)" if lacking else ""
    print(f"source {name}: model {model.name} serves embedkeeper.{name} (was {current}){forced}")
    return 0


def _refusal(coverage: Coverage | None, lacking: int | None, source: str, model: str) -> str:
    fix = (
        f"run `embedkeeper backfill --source {source} --model {model}` (or let the daemon"
        " catch up), or switch with --force"
    )
    if coverage is None or lacking is None:
        return f"{source}/{model} has nothing embedded yet (no tables): {fix}"
    parts = {
        "pending": coverage.pending,
        "stale": coverage.stale,
        "in review": coverage.failed,
        "ignored": coverage.ignored,
    }
    said = ", ".join(f"{count} {what}" for what, count in parts.items() if count)
    return (
        f"{source}/{model} lacks {lacking} of {coverage.total - coverage.skipped} documents"
        f" ({said}; coverage {coverage.coverage_percent:.2f}%), so search would miss them: {fix}"
    )
