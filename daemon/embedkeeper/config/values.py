"""Parsers of single config values: durations, SQL names, URLs and typed scalars.

Each takes the raw TOML value and the key it came from, and raises a ConfigError that names that
key. Pure: nothing here reads a file or the environment (config/loader.py does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from embedkeeper.errors import ConfigError

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


Parser = Callable[[object, str], Any]


def str_value(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a string, not {value!r}")
    return value


def nonempty_str(value: object, key: str) -> str:
    text = str_value(value, key)
    if not text.strip():
        raise ConfigError(f"config: {key} must not be empty")
    return text


def source_names(value: object, key: str) -> tuple[str, ...]:
    """A non-empty list of names, e.g. ["articles", "pages"]."""
    if not isinstance(value, list):
        raise ConfigError(
            f'config: {key} must be a list of source names, e.g. ["articles"], not {value!r}'
        )
    if not value:
        raise ConfigError(f"config: {key} is empty; leave it out to apply to every source")
    return tuple(nonempty_str(item, key) for item in value)


def positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config: {key} must be a positive integer, not {value!r}")
    return value


def non_negative_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"config: {key} must be a whole number, 0 or more (got {value!r})")
    return value


def bool_value(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config: {key} must be true or false, not {value!r}")
    return value


def choice(*choices: str) -> Parser:
    def parse(value: object, key: str) -> str:
        if value not in choices:
            allowed = ", ".join(f'"{c}"' for c in choices)
            raise ConfigError(f"config: {key} must be one of {allowed}, not {value!r}")
        return str(value)

    return parse


def table_value(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"config: {key} must be a table, e.g. {{ num_ctx = 8192 }}")
    return dict(value)


def http_url(value: object, key: str) -> str:
    """http or https only, and no credentials: a key goes in api_key_env or api_key_file, where
    it is never part of a URL that could be logged."""
    from urllib.parse import urlsplit

    text = nonempty_str(value, key).rstrip("/")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ConfigError(f"config: {key} is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"config: {key} must be an http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ConfigError(
            f"config: {key} must not hold credentials; put the API key in api_key_env or "
            "api_key_file"
        )
    return text


def column_value(value: object, key: str) -> str:
    parts = split_qualified_name(nonempty_str(value, key), key)
    if len(parts) != 1:
        raise ConfigError(f"config: {key} must be a single column name, not {value!r}")
    return parts[0]
