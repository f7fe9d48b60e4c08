"""Several sources in one config: `[[sources]]`, their names, and `[[models]] sources`."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedkeeper.config import DEMO_SOURCE, Config, ModelConfig, SourceConfig, parse_config
from embedkeeper.config.loader import load_config
from embedkeeper.errors import ConfigError

FILE = Path("embedkeeper.toml")
# Keys of three types: the database says which; the config only names the columns.
THREE = [
    {"table": "public.articles", "id_column": "id"},  # bigint
    {"table": "wiki.pages", "id_column": "slug", "text_expression": "title || body"},  # text
    {
        "name": "tickets",
        "table": 'support."Ticket"',
        "id_column": "ticket_uuid",  # uuid
        "where": "closed_at IS NULL",
        "watermark_lag": "1m",
    },
]
MODELS = [{"name": "minilm"}, {"name": "nomic", "dimensions": 768}]


def parse(document, env=None):
    return parse_config(document, env or {}, path=FILE)


def error_of(document) -> str:
    with pytest.raises(ConfigError) as error:
        parse(document)
    return str(error.value)


def test_sources_parse_in_file_order_with_their_own_keys():
    config = parse({"sources": THREE})
    articles, pages, tickets = config.sources
    assert [s.source_name for s in config.sources] == ["articles", "pages", "tickets"]
    assert (articles.schema, articles.table, articles.id_column) == ("public", "articles", "id")
    assert (pages.id_column, pages.text_expression) == ("slug", "title || body")
    assert (tickets.schema, tickets.table, tickets.id_column) == (
        "support",
        "Ticket",
        "ticket_uuid",
    )
    assert (tickets.where, tickets.watermark_lag_s) == ("closed_at IS NULL", 60.0)
    assert articles.watermark_lag_s == 300.0
    assert config.source is articles


def test_a_source_is_named_after_its_table_without_the_schema():
    config = parse({"sources": [{"table": 'Archivo."Documento"'}, {"table": "docs"}]})
    assert [s.source_name for s in config.sources] == ["Documento", "docs"]
    assert config.source_named("Documento").schema == "archivo"


def test_the_same_table_name_in_two_schemas_needs_a_name():
    message = error_of({"sources": [{"table": "public.docs"}, {"table": "archive.docs"}]})
    assert message == (
        'config: [[sources]] name "docs" is used twice (tables public.docs and archive.docs); '
        'give one of them another, e.g. name = "archive_docs"'
    )


def test_two_sources_given_one_name_are_refused():
    sources = [{"name": "kb", "table": "articles"}, {"name": "kb", "table": "pages"}]
    assert error_of({"sources": sources}) == (
        'config: [[sources]] name "kb" is used twice (tables articles and pages); '
        'give one of them another, e.g. name = "kb_2"'
    )


def test_two_sources_on_one_table_with_their_own_names_are_allowed():
    sources = [
        {"name": "short", "table": "docs", "where": "length(body) < 1000"},
        {"name": "long", "table": "docs", "where": "length(body) >= 1000"},
    ]
    assert [s.source_name for s in parse({"sources": sources}).sources] == ["short", "long"]


def test_source_and_sources_together_are_refused():
    assert error_of({"source": {"table": "a"}, "sources": [{"table": "b"}]}) == (
        "config: the file has both [source] and [[sources]]; use one: [source] for one source, "
        "or [[sources]] for each of several"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"sources": []}, "config: [[sources]] is empty; give it one table per source"),
        (
            {"sources": {"table": "docs"}},
            "config: [[sources]] must be an array of tables, one per source",
        ),
        (
            {"source": [{"table": "docs"}]},
            "config: write [source] for one source, or [[sources]] for several",
        ),
        (
            {"sources": [{"table": "docs"}, {"id_column": "id"}]},
            'config: [[sources]] #2 table is required, e.g. table = "public.documents"',
        ),
        (
            {"sources": [{"name": "kb", "table": "a.b.c"}]},
            'config: [[sources]] "kb" table must be table or schema.table',
        ),
    ],
)
def test_malformed_sources_are_refused(document, message):
    assert error_of(document) == message


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"name": "pages", "table": "pages"}, '[[sources]] "pages"'),
        ({"table": "pages"}, "[[sources]] #2"),
    ],
)
def test_an_unknown_key_in_an_entry_names_the_entry(entry, where):
    entry = {**entry, "text_colum": "body"}
    message = error_of({"sources": [{"table": "articles"}, entry]})
    assert message == (f'config: unknown key "text_colum" in {where}; did you mean "text_column"?')


def test_models_apply_to_every_source_unless_they_name_some():
    models = [*MODELS, {"name": "e5", "sources": ["pages", "tickets"]}]
    config = parse({"sources": THREE, "models": models})
    assert [(s.source_name, m.name) for s, m in config.pairs()] == [
        ("articles", "minilm"),
        ("articles", "nomic"),
        ("pages", "minilm"),
        ("pages", "nomic"),
        ("pages", "e5"),
        ("tickets", "minilm"),
        ("tickets", "nomic"),
        ("tickets", "e5"),
    ]
    assert config.model("e5").sources == ("pages", "tickets")
    assert config.model("minilm").sources is None


def test_pairs_follow_the_files_order_of_sources_then_models():
    models = [
        {"name": "b", "sources": ["articles"]},
        {"name": "a", "sources": ["pages", "tickets", "articles"]},
    ]
    config = parse({"sources": list(reversed(THREE)), "models": models})
    assert [(s.source_name, m.name) for s, m in config.pairs()] == [
        ("tickets", "a"),
        ("pages", "a"),
        ("articles", "b"),
        ("articles", "a"),
    ]


def test_a_model_naming_an_unknown_source_suggests_the_closest():
    models = [{"name": "e5", "sources": ["artcles"]}, {"name": "minilm"}]
    assert error_of({"sources": THREE, "models": models}) == (
        'config: [[models]] "e5" sources names "artcles", which is not a source; did you mean '
        '"articles"? (sources: articles, pages, tickets)'
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], 'config: [[models]] "e5" sources is empty; leave it out to apply to every source'),
        (
            "articles",
            'config: [[models]] "e5" sources must be a list of source names, e.g. ["articles"], '
            "not 'articles'",
        ),
        ([""], 'config: [[models]] "e5" sources must not be empty'),
    ],
)
def test_bad_model_sources_are_refused(value, message):
    assert error_of({"sources": THREE, "models": [{"name": "e5", "sources": value}]}) == message


def test_a_source_no_model_applies_to_is_refused():
    models = [{"name": "e5", "sources": ["articles", "tickets"]}]
    assert error_of({"sources": THREE, "models": models}) == (
        'config: no model applies to source "pages": every [[models]] entry lists other sources; '
        "add it to one's sources, or remove the source"
    )


def test_model_sources_may_name_the_single_source():
    config = parse({"source": {"table": "docs"}, "models": [{"name": "m", "sources": ["docs"]}]})
    assert [(s.table, m.name) for s, m in config.pairs()] == [("docs", "m")]
    message = error_of({"source": {"table": "docs"}, "models": [{"name": "m", "sources": ["x"]}]})
    assert message.startswith('config: [[models]] "m" sources names "x", which is not a source')


def test_source_is_still_one_source():
    config = parse({"source": {"table": "public.docs", "name": "kb"}, "models": MODELS})
    assert config.sources == (config.source,)
    assert config.source.source_name == "kb"
    assert [(s.source_name, m.name) for s, m in config.pairs()] == [
        ("kb", "minilm"),
        ("kb", "nomic"),
    ]


def test_the_demo_keeps_its_one_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={})
    assert config.sources == (DEMO_SOURCE,)
    assert [(s, m.name) for s, m in config.pairs()] == [(DEMO_SOURCE, "minilm")]


def test_source_named_lists_the_names_when_there_is_none():
    config = parse({"sources": THREE})
    assert config.source_named("pages").id_column == "slug"
    with pytest.raises(ConfigError) as error:
        config.source_named("page")
    assert str(error.value) == 'config: no source named "page" (sources: articles, pages, tickets)'


def test_a_config_built_with_one_source_has_it_as_its_sources():
    docs = SourceConfig(schema=None, table="docs")
    config = Config(source=docs, models=(ModelConfig(name="m"),))
    assert config.sources == (docs,)
    assert config.source_named("docs") is docs
    with pytest.raises(ValueError, match=r"sources\[0\]"):
        Config(source=docs, sources=(DEMO_SOURCE, docs), models=(ModelConfig(name="m"),))


def test_a_file_with_two_sources_is_read(tmp_path):
    path = tmp_path / "embedkeeper.toml"
    path.write_text(
        '[[sources]]\ntable = "public.articles"\n\n'
        '[[sources]]\nname = "wiki"\ntable = "wiki.pages"\nid_column = "slug"\n\n'
        '[[models]]\nname = "minilm"\nsources = ["wiki"]\n\n'
        '[[models]]\nname = "nomic"\n'
    )
    config = load_config(path, env={})
    assert [(s.source_name, m.name) for s, m in config.pairs()] == [
        ("articles", "nomic"),
        ("wiki", "minilm"),
        ("wiki", "nomic"),
    ]
