"""Configuration: one TOML file plus a few environment overrides, read into frozen dataclasses.

This is the only module that reads TOML or os.environ. Every message names the TOML key and the fix,
and an unknown key is an error that suggests the closest valid one, so a typo never silently falls
back to a default. With no file at all, every command runs the demo: the embedded PostgreSQL, the
demo table and the packaged MiniLM model.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedkeeper.config.keys import SECTIONS, parse_section
from embedkeeper.config.settings import (
    BACKEND_KEYS,
    DEFAULT_MODEL,
    DEFAULT_PATHS,
    DEFAULT_URLS,
    HTTP_BACKENDS,
    Config,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    RetryConfig,
    RunsConfig,
    ScheduleConfig,
)
from embedkeeper.config.sources import check_model_sources, parse_sources
from embedkeeper.errors import ConfigError

log = logging.getLogger(__name__)


def _model(values: dict[str, Any], where: str, env: Mapping[str, str]) -> ModelConfig:
    backend = values.get("backend", "sentence-transformers")
    for key, backends in BACKEND_KEYS.items():
        if key in values and backend not in backends:
            raise ConfigError(
                f'config: {where} {key} applies to backend {" or ".join(backends)}, not "{backend}"'
            )
    if backend in HTTP_BACKENDS:
        _check_server_keys(values, backend, where)
    if values.get("request_dimensions") and "dimensions" not in values:
        raise ConfigError(f"config: {where} request_dimensions needs dimensions")
    if "api_key_env" in values and "api_key_file" in values:
        raise ConfigError(f"config: {where} takes api_key_env or api_key_file, not both")
    values["api_key"] = _api_key(
        values.pop("api_key_env", None), values.pop("api_key_file", None), where, env
    )
    if "timeout" in values:
        values["timeout_s"] = values.pop("timeout")
    if "chunk_overlap" in values:
        # Chunks are cut at sentence and paragraph ends chosen by their content
        # (chunking/boundaries.py): a repeated tail would make an edit near a cut renew both.
        values.pop("chunk_overlap")
        log.warning(
            "config: %s chunk_overlap no longer applies and is ignored: chunks are cut at"
            " sentence and paragraph ends and share no text (docs/upgrading.md)",
            where,
        )
    if backend in DEFAULT_URLS:
        values.setdefault("url", DEFAULT_URLS[backend])
    if "claim_size" not in values:
        # A local model gets length-sorted slices of a large claim (less padding); a server
        # gets requests of batch_size, a few claimed at a time.
        factor = 32 if backend in ("sentence-transformers", "null") else 4
        values["claim_size"] = max(factor * values.get("batch_size", 32), 64)
    return ModelConfig(**values)


def _check_server_keys(values: dict[str, Any], backend: str, where: str) -> None:
    if "model" not in values:
        raise ConfigError(f"config: {where} needs model, the server's name for the model")
    if backend == "openai" and "url" not in values:
        raise ConfigError(f'config: {where} needs url, e.g. url = "http://127.0.0.1:8080/v1"')
    if "max_tokens" in values and "tokenizer" not in values:
        raise ConfigError(f"config: {where} max_tokens needs tokenizer (to count the tokens)")


def _api_key(
    variable: str | None, path: str | None, where: str, env: Mapping[str, str]
) -> str | None:
    """The key's value, read now; messages name where it should be, never what it is."""
    if variable is not None:
        value = env.get(variable, "").strip()
        if not value:
            raise ConfigError(f"config: {where} api_key_env names {variable}, which is not set")
        return value
    if path is not None:
        try:
            value = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"config: {where} api_key_file {path} cannot be read: {exc.strerror}"
            ) from exc
        if not value:
            raise ConfigError(f"config: {where} api_key_file {path} is empty")
        return value
    return None


def _models(raw: object, env: Mapping[str, str]) -> tuple[ModelConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("config: [[models]] must be an array of tables, one per model")
    models: list[ModelConfig] = []
    for index, entry in enumerate(raw):
        label = entry.get("name") if isinstance(entry, dict) else None
        where = f'[[models]] "{label}"' if isinstance(label, str) else f"[[models]] #{index + 1}"
        values = parse_section(entry, "models", where)
        if "name" not in values:
            raise ConfigError(f'config: {where} needs a name, e.g. name = "minilm"')
        models.append(_model(values, where, env))
    names = [m.name for m in models]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f'config: [[models]] name "{duplicates[0]}" is used twice')
    return tuple(models)


def _schedule(raw: object) -> ScheduleConfig:
    values = parse_section(raw, "schedule", "[schedule]")
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


def _metrics(raw: object) -> MetricsConfig:
    values = parse_section(raw, "metrics", "[metrics]")
    for key in ("coverage_interval", "backlog_interval"):
        if key in values:
            values[f"{key}_s"] = values.pop(key)
    return MetricsConfig(**values)


def _runs(raw: object) -> RunsConfig:
    values = parse_section(raw, "runs", "[runs]")
    return RunsConfig(keep_s=values["keep"]) if "keep" in values else RunsConfig()


def _retry(raw: object) -> RetryConfig:
    values = parse_section(raw, "retry", "[retry]")
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
    database = parse_section(document.get("database", {}), "database", "[database]")
    url = env.get("EMBEDKEEPER_DATABASE_URL") or env.get("DATABASE_URL") or database.get("url")
    if url is not None:
        _check_url(url)
    data_dir = env.get("EMBEDKEEPER_DATA_DIR") or database.get("data_dir")
    sources = parse_sources(document, in_file=path is not None)
    models = _models(document["models"], env) if "models" in document else (DEFAULT_MODEL,)
    check_model_sources(models, sources)
    return Config(
        database_url=url,
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        connect_timeout_s=database.get("connect_timeout", 10.0),
        claim_lease_s=database.get("claim_lease", 600.0),
        source=sources[0],
        sources=sources,
        models=models,
        schedule=_schedule(document.get("schedule", {})),
        retry=_retry(document.get("retry", {})),
        logging=LoggingConfig(**parse_section(document.get("logging", {}), "logging", "[logging]")),
        metrics=_metrics(document.get("metrics", {})),
        runs=_runs(document.get("runs", {})),
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
