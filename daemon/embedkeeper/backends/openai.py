"""The OpenAI-compatible embedding API (OpenAI, text-embeddings-inference, vLLM, infinity,
llama.cpp server, LM Studio, Ollama's /v1).

The URL rule (embeddings_url): a url ending in /embeddings is used as it is; one ending in /v1 gets
/embeddings; any other gets /v1/embeddings. So infinity, which serves POST /embeddings at its root
unless started with --url-prefix /v1, is reached with url = "http://host:7997/embeddings".

Request:  {"model": ..., "input": [...], "encoding_format": "float", "dimensions": N?}
Response: {"data": [{"index": i, "embedding": [...] or base64}, ...], "usage": {"prompt_tokens": N}}
Results are put back in input order by `index`; base64 is little-endian float32.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from embedkeeper.backends.wire import (
    Reply,
    WireError,
    model_named,
    server_figure,
    vectors_from_lists,
)
from embedkeeper.config import ModelConfig


def embeddings_url(base: str) -> str:
    """The endpoint for a configured url (the rule in the module docstring)."""
    if base.endswith("/embeddings"):
        return base
    if base.endswith("/v1"):
        return base + "/embeddings"
    return base + "/v1/embeddings"


class OpenAIWire:
    label = "openai"

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        assert config.url is not None
        self.url = embeddings_url(config.url)

    def payload(self, texts: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "input": texts,
            "encoding_format": self.config.encoding_format,
        }
        if self.config.request_dimensions:
            body["dimensions"] = self.config.dimensions
        return body

    def parse(self, data: Any, count: int) -> Reply:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise WireError("response has no data list")
        if len(items) != count:
            raise WireError(f"{len(items)} embeddings for {count} inputs")
        by_index: dict[int, Any] = {}
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or index in by_index:
                raise WireError("embedding indexes are missing, out of range or repeated")
            by_index[index] = _decode(item.get("embedding"))
        vectors = vectors_from_lists([by_index[i] for i in range(count)], count)
        usage = data.get("usage")
        tokens: Any = 0
        if isinstance(usage, dict):
            tokens = usage.get("prompt_tokens", usage.get("total_tokens"))
        return Reply(vectors, server_figure(tokens), model_named(data))


def _decode(embedding: Any) -> Any:
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WireError("embedding is not valid base64") from exc
        if len(raw) % 4:
            raise WireError("base64 embedding is not a whole number of float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return embedding
