"""The sources of a config: `[source]` (one) or `[[sources]]` (several), their names, and which
models apply to which.

A source's name files its vectors (`embedkeeper.<source>__<model>_...`) and names its serving view
(`embedkeeper.<source>`, which may not be a name a pair's relation or embedkeeper's own table
can take: models/pairs.py serving_name_problem), so names must be unique; a model's `sources`
list must name sources that exist, and a source's `serve` a model that embeds it. Pure:
config/loader.py hands it the parsed TOML document; it reads neither a file nor the
environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from embedkeeper.config.keys import parse_section
from embedkeeper.config.settings import DEMO_SOURCE, ModelConfig, SourceConfig
from embedkeeper.config.values import split_qualified_name
from embedkeeper.errors import ConfigError
from embedkeeper.models.pairs import MAX_NAME, OWN_RELATIONS, PAIR_MARK, serving_name_problem


def parse_sources(document: Mapping[str, Any], in_file: bool) -> tuple[SourceConfig, ...]:
    """`[source]` is one source, `[[sources]]` several. A file with neither is missing its
    `[source]` table; the built-in demo (no file) has its own."""
    if "source" in document and "sources" in document:
        raise ConfigError(
            "config: the file has both [source] and [[sources]]; use one: [source] for one "
            "source, or [[sources]] for each of several"
        )
    if isinstance(document.get("source"), list):
        raise ConfigError("config: write [source] for one source, or [[sources]] for several")
    if "sources" in document:
        return _many(document["sources"])
    if in_file or "source" in document:
        values = parse_section(document.get("source", {}), "source", "[source]")
        return (make_source(values, "[source]"),)
    return (DEMO_SOURCE,)


def _many(raw: object) -> tuple[SourceConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("config: [[sources]] must be an array of tables, one per source")
    if not raw:
        raise ConfigError("config: [[sources]] is empty; give it one table per source")
    sources = []
    for index, entry in enumerate(raw):
        where = _entry_label(entry, index)
        sources.append(make_source(parse_section(entry, "sources", where), where))
    _check_unique_names(sources)
    return tuple(sources)


def make_source(values: dict[str, Any], where: str) -> SourceConfig:
    """One source from the parsed keys of `[source]` or one `[[sources]]` entry."""
    if "table" not in values:
        raise ConfigError(f'config: {where} table is required, e.g. table = "public.documents"')
    if "text_expression" in values and "text_column" in values:
        raise ConfigError(f"config: {where} takes text_column or text_expression, not both")
    parts = split_qualified_name(values.pop("table"), f"{where} table")
    if len(parts) > 2:
        raise ConfigError(f"config: {where} table must be table or schema.table")
    schema, table = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if "watermark_lag" in values:
        values["watermark_lag_s"] = values.pop("watermark_lag")
    if "full_text" in values:  # "" says off; left out, the default ("english")
        values["full_text"] = values["full_text"].strip() or None
    source = SourceConfig(schema=schema, table=table, **values)
    if problem := serving_name_problem(source.source_name):
        raise ConfigError(
            f'config: {where} is named "{source.source_name}", which cannot name its serving'
            f" view embedkeeper.{source.source_name}: {problem}; give it another name, e.g."
            f' name = "{_plainer(source.source_name)}"'
        )
    return source


def _plainer(name: str) -> str:
    """A name the serving view can take, to suggest."""
    while PAIR_MARK in name:
        name = name.replace(PAIR_MARK, "_")
    name = name[:MAX_NAME].rstrip("_") or "documents"
    return f"{name}_docs" if name in OWN_RELATIONS else name


def _entry_label(entry: object, index: int) -> str:
    """How messages name the index-th (0-based) `[[sources]]` entry: by its name, else by number."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return f'[[sources]] "{name}"' if isinstance(name, str) else f"[[sources]] #{index + 1}"


def _check_unique_names(sources: Sequence[SourceConfig]) -> None:
    seen: dict[str, SourceConfig] = {}
    for source in sources:
        name = source.source_name
        if (first := seen.setdefault(name, source)) is not source:
            other = f"{source.schema}_{source.table}" if source.schema else f"{name}_2"
            raise ConfigError(
                f'config: [[sources]] name "{name}" is used twice (tables {first.display_name} '
                f'and {source.display_name}); give one of them another, e.g. name = "{other}"'
            )


def check_model_sources(models: Sequence[ModelConfig], sources: Sequence[SourceConfig]) -> None:
    """Every name in a model's `sources` is a source, and every source has a model."""
    names = [s.source_name for s in sources]
    for model in models:
        for name in model.sources or ():
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                raise ConfigError(
                    f'config: [[models]] "{model.name}" sources names "{name}", which is not a '
                    f"source{hint} (sources: {', '.join(names)})"
                )
    for source in sources:
        if source.serve is not None:
            _check_serve(source, models)
    for name in names:
        if not any(model.sources is None or name in model.sources for model in models):
            raise ConfigError(
                f'config: no model applies to source "{name}": every [[models]] entry lists '
                f"other sources; add it to one's sources, or remove the source"
            )


def _check_serve(source: SourceConfig, models: Sequence[ModelConfig]) -> None:
    """`serve` names a model that embeds the source."""
    name, serve = source.source_name, source.serve
    embedding = [m.name for m in models if m.sources is None or name in m.sources]
    if serve not in embedding:
        close = difflib.get_close_matches(serve or "", embedding, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise ConfigError(
            f'config: source "{name}" serve = "{serve}" is not a model that embeds it{hint}'
            f" (its models: {', '.join(embedding)})"
        )
