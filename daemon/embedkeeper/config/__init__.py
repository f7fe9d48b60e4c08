"""Configuration: one TOML file plus a few environment overrides, read into frozen dataclasses.

settings.py holds the records, loader.py reads the file and the environment into them (the only
reader of TOML and os.environ), keys.py lists every key with its parser, values.py parses one value
at a time, sources.py builds `[source]` or `[[sources]]` and checks names across sources and models.
Import from here.
"""

from __future__ import annotations

from embedkeeper.config.loader import find_config_file, load_config, parse_config
from embedkeeper.config.settings import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_REF,
    DEMO_SOURCE,
    Config,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    RetryConfig,
    RunsConfig,
    ScheduleConfig,
    SourceConfig,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_REF",
    "DEMO_SOURCE",
    "Config",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "RetryConfig",
    "RunsConfig",
    "ScheduleConfig",
    "SourceConfig",
    "find_config_file",
    "load_config",
    "parse_config",
]
