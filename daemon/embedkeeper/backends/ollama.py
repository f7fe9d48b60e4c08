"""Ollama's embedding API: POST /api/embed with the whole batch as `input`.

Request:  {"model": ..., "input": [...], "truncate": true, "keep_alive": "5m", "options": {...}}
Response: {"model": ..., "embeddings": [[...], ...], "prompt_eval_count": N}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedkeeper.backends.wire import WireError, vectors_from_lists
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

    def parse(self, data: Any, count: int) -> tuple[list[np.ndarray], int]:
        if not isinstance(data, dict) or not isinstance(data.get("embeddings"), list):
            raise WireError("response has no embeddings list")
        vectors = vectors_from_lists(data["embeddings"], count)
        tokens = data.get("prompt_eval_count")
        return vectors, tokens if isinstance(tokens, int) and tokens >= 0 else 0
