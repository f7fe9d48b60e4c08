"""Ollama's embedding API: POST /api/embed with the whole batch as `input`.

Request:  {"model": ..., "input": [...], "truncate": true, "keep_alive": "5m", "options": {...}}
Response: {"model": ..., "embeddings": [[...], ...], "prompt_eval_count": N}
Ollama also serves the OpenAI API under /v1 (backend "openai", url "http://host:11434/v1").
"""

from __future__ import annotations

from typing import Any

from embedkeeper.backends.wire import (
    Reply,
    WireError,
    model_named,
    server_figure,
    vectors_from_lists,
)
from embedkeeper.config import ModelConfig


class OllamaWire:
    label = "ollama"

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        assert config.url is not None
        self.url = config.url + "/api/embed"

    def payload(self, texts: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "input": texts,
            "truncate": self.config.truncate,
        }
        if self.config.keep_alive is not None:
            body["keep_alive"] = self.config.keep_alive
        if self.config.options:
            body["options"] = dict(self.config.options)
        return body

    def parse(self, data: Any, count: int) -> Reply:
        if not isinstance(data, dict) or not isinstance(data.get("embeddings"), list):
            raise WireError("response has no embeddings list")
        vectors = vectors_from_lists(data["embeddings"], count)
        return Reply(vectors, server_figure(data.get("prompt_eval_count")), model_named(data))
