"""Config parsing: every error names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedkeeper.config import DEMO_SOURCE, load_config, parse_config
from embedkeeper.config.values import parse_duration, split_qualified_name
from embedkeeper.errors import ConfigError

FILE = Path("embedkeeper.toml")
SOURCE = {"table": "docs"}


def parse(document, env=None):
    return parse_config(document, env or {}, path=FILE)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("docs", ["docs"]),
        ("Docs", ["docs"]),
        ('archivo."Documento"', ["archivo", "Documento"]),
        ('"my schema"."a.b"', ["my schema", "a.b"]),
        ('"say ""hi"""', ['say "hi"']),
        ('"docs""; DROP TABLE x; --"', ['docs"; DROP TABLE x; --']),
        ("café.Straße", ["café", "straße"]),
    ],
)
def test_qualified_names_split_the_way_postgresql_reads_them(text, parts):
    assert split_qualified_name(text, "[source] table") == parts


@pytest.mark.parametrize("text", ['"open', "a..b", "a.", "a b", 'a"b"', ""])
def test_malformed_names_are_refused(text):
    with pytest.raises(ConfigError):
        split_qualified_name(text, "[source] table")


def test_schema_qualified_mixed_case_table_is_split_at_load():
    config = parse({"source": {"table": 'archivo."Documento"', "text_column": '"Cuerpo"'}})
    assert (config.source.schema, config.source.table) == ("archivo", "Documento")
    assert config.source.text_column == "Cuerpo"


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ConfigError) as error:
        parse({"source": SOURCE, "models": [{"name": "minilm", "batch_sise": 8}]})
    assert str(error.value) == (
        'config: unknown key "batch_sise" in [[models]] "minilm"; did you mean "batch_size"?'
    )


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match=r'unknown section "shedule"; did you mean "schedule"'):
        parse({"source": SOURCE, "shedule": {}})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"source": {}}, r"\[source\] table is required"),
        ({"source": SOURCE, "models": [{"batch_size": 8}]}, "needs a name"),
        ({"source": SOURCE, "models": [{"name": "a"}, {"name": "a"}]}, "used twice"),
        ({"source": SOURCE, "models": [{"name": "a", "batch_size": 0}]}, "positive integer"),
        ({"source": SOURCE, "models": [{"name": "a", "device": "tpu"}]}, '"auto", "cpu", "cuda"'),
        ({"source": SOURCE, "schedule": {"interval": "5 minutes"}}, "duration"),
        ({"source": SOURCE, "schedule": {"interval": "5m", "cron": "* * * * *"}}, "not both"),
        ({"source": SOURCE, "schedule": {"cron": "every hour"}}, "crontab"),
        ({"source": SOURCE, "database": {"url": "mysql://x"}}, "postgresql://"),
    ],
)
def test_bad_values_are_errors_that_name_the_key(document, message):
    with pytest.raises(ConfigError, match=message):
        parse(document)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (90, 90)],
)
def test_durations(value, seconds):
    assert parse_duration(value, "k") == seconds


def test_environment_overrides_the_file_url_in_order():
    document = {"source": SOURCE, "database": {"url": "postgresql://file/db"}}
    assert parse(document).database_url == "postgresql://file/db"
    assert parse(document, {"DATABASE_URL": "postgresql://plain/db"}).database_url == (
        "postgresql://plain/db"
    )
    both = {
        "DATABASE_URL": "postgresql://plain/db",
        "EMBEDKEEPER_DATABASE_URL": "postgresql://ek/db",
    }
    assert parse(document, both).database_url == "postgresql://ek/db"


def test_password_is_not_in_the_config_repr():
    config = parse({"source": SOURCE}, {"DATABASE_URL": "postgresql://u:S3cret@h/db"})
    assert "S3cret" not in repr(config)


def test_no_file_means_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={})
    assert config.is_demo
    assert config.database_url is None
    assert config.source == DEMO_SOURCE
    assert [m.name for m in config.models] == ["minilm"]
    assert config.models[0].dimensions == 384


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_invalid_toml_is_an_error(tmp_path):
    path = tmp_path / "embedkeeper.toml"
    path.write_text("[source\ntable = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


def test_file_is_read_with_its_models(tmp_path):
    path = tmp_path / "embedkeeper.toml"
    path.write_text(
        '[source]\ntable = "public.docs"\nupdated_at_column = "updated_at"\n'
        '[[models]]\nname = "m"\nbatch_size = 8\nprefix = "search_document: "\n'
        '[retry]\nmax_attempts = 5\nbackoff = "2m"\n'
    )
    config = load_config(path, env={})
    model = config.model("m")
    assert (model.batch_size, model.claim_size, model.prefix) == (8, 256, "search_document: ")
    assert (config.retry.max_attempts, config.retry.backoff_s) == (5, 120.0)
    with pytest.raises(ConfigError, match='no model named "x"'):
        config.model("x")


def test_a_url_with_an_unencoded_at_sign_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as error:
        parse({"source": SOURCE}, {"DATABASE_URL": "postgresql://u:pa@ss@h/db"})
    assert "%40" in str(error.value)
    assert "pa@ss" not in str(error.value)


@pytest.mark.parametrize(
    ("value", "parsed"), [("english", "english"), (" simple ", "simple"), ("", None)]
)
def test_full_text_names_a_text_search_configuration_and_empty_says_off(value, parsed):
    config = parse({"source": {**SOURCE, "full_text": value}, "models": [{"name": "m"}]})
    assert config.source.full_text == parsed
    # left out: on, in English (the default)
    assert parse({"source": SOURCE, "models": [{"name": "m"}]}).source.full_text == "english"
    with pytest.raises(ConfigError, match="full_text must be a string"):
        parse({"source": {**SOURCE, "full_text": True}, "models": [{"name": "m"}]})
