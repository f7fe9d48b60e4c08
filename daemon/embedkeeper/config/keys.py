"""Every key of the TOML file, section by section, with the parser of its value.

The one list of what the file may say: parse_section() refuses any other key (suggesting the
closest), and docs/configuration.md documents each one (a test holds the two together).
"""

from __future__ import annotations

import difflib
from typing import Any

from embedkeeper.config.settings import BACKENDS, DEVICES
from embedkeeper.config.values import (
    Parser,
    bool_value,
    choice,
    column_value,
    http_url,
    non_negative_int,
    nonempty_str,
    parse_duration,
    positive_int,
    source_names,
    str_value,
    table_value,
)
from embedkeeper.errors import ConfigError

SOURCE_KEYS: dict[str, Parser] = {
    "name": nonempty_str,
    "table": nonempty_str,
    "id_column": column_value,
    "text_column": column_value,
    "updated_at_column": column_value,
    "text_expression": nonempty_str,
    "where": nonempty_str,
    "watermark_lag": parse_duration,
    "full_text": str_value,
    "serve": nonempty_str,
}

SECTIONS: dict[str, dict[str, Parser]] = {
    "database": {
        "url": nonempty_str,
        "data_dir": nonempty_str,
        "connect_timeout": parse_duration,
        "claim_lease": parse_duration,
    },
    # One source, or an array of them with the same keys (a file takes one form or the other).
    "source": SOURCE_KEYS,
    "sources": SOURCE_KEYS,
    "models": {
        "name": nonempty_str,
        "backend": choice(*BACKENDS),
        "model": nonempty_str,
        "dimensions": positive_int,
        "batch_size": positive_int,
        "claim_size": positive_int,
        "device": choice(*DEVICES),
        "normalize": bool_value,
        "prefix": str_value,
        "query_prefix": str_value,
        "max_tokens": positive_int,
        "chunking": choice("text", "markdown", "none"),
        "chunk_tokens": positive_int,
        "chunk_overlap": non_negative_int,
        "max_chunks": positive_int,
        "storage": choice("vector", "halfvec"),
        "tokenizer": nonempty_str,
        "url": http_url,
        "concurrency": positive_int,
        "timeout": parse_duration,
        "api_key_env": nonempty_str,
        "api_key_file": nonempty_str,
        "truncate": bool_value,
        "keep_alive": nonempty_str,
        "options": table_value,
        "request_dimensions": bool_value,
        "encoding_format": choice("float", "base64"),
        "sources": source_names,
    },
    "schedule": {
        "interval": parse_duration,
        "cron": nonempty_str,
        "sweep_interval": parse_duration,
        "misfire_grace": parse_duration,
    },
    "retry": {
        "max_attempts": positive_int,
        "backoff": parse_duration,
        "backoff_max": parse_duration,
        "transient_attempts": positive_int,
        "transient_backoff_max": parse_duration,
    },
    "metrics": {
        "port": positive_int,
        "host": nonempty_str,
        "coverage_interval": parse_duration,
        "backlog_interval": parse_duration,
    },
    "runs": {"keep": parse_duration},
    "logging": {
        "level": choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "format": choice("text", "json"),
    },
}


def parse_section(raw: object, name: str, where: str) -> dict[str, Any]:
    """Parse one table of the file: check every key, convert every value. `where` is how
    messages name the table, e.g. `[[models]] "minilm"`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {where} must be a table")
    parsers = SECTIONS[name]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in parsers:
            raise _unknown(key, list(parsers), where)
        out[key] = parsers[key](value, f"{where} {key}")
    return out


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f" (valid keys: {', '.join(valid)})"
    return ConfigError(f'config: unknown key "{key}" in {where}{hint}')
