"""The chunker a [[models]] entry asks for, built from the config and the model's files alone.

No model is loaded: the tokenizer is read from tokenizer.json (the local model's directory or
package, or a server's `tokenizer` key) and the window from `max_tokens` or the directory's
settings, so `coverage` and the claim agree with the pass on what "current" means (the
fingerprint) without starting torch. A server with no tokenizer gets a character budget
(chunker.CHARS_PER_TOKEN a token) of its `max_tokens`, else of SERVER_WINDOW tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedkeeper.chunking.chunker import CHARS_PER_TOKEN, Chunker, make_chunker
from embedkeeper.chunking.tokenizer import Window, find_tokenizer_file, load_tokenizer, window_of
from embedkeeper.config import ModelConfig
from embedkeeper.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# A server's window when neither `max_tokens` nor `tokenizer` says: the smallest common one
# (MiniLM-class models), so that chunks fit whatever the server runs.
SERVER_WINDOW = 256
# The most characters a token may stand for, for reading a text: ample margin (a token of
# English prose is about 4 characters; of code or a base64 blob, more).
CHARS_PER_TOKEN_BOUND = 32
VECTORS_KEY_CHARS = 10


@dataclass(frozen=True, slots=True)
class ModelChunking:
    """A model's chunker and what a claim reads for it."""

    chunker: Chunker
    capacity: int  # tokens of text per chunk (0 with chunking "none")

    @property
    def fingerprint(self) -> str:
        return self.chunker.fingerprint

    def max_chars(self, window_chars: int) -> int:
        """How much of a text to read: what max_chunks chunks can hold, at the bound; with
        chunking "none", `window_chars` (the backend's own bound for one window)."""
        if self.capacity == 0:
            return window_chars
        return self.chunker.max_chunks * self.capacity * CHARS_PER_TOKEN_BOUND

    def claim_chars(self, claim_size: int, window_chars: int) -> int:
        """The text one claim may hold: about claim_size windows of prose, so a claim of long
        documents costs the model what a claim of short ones did, and its memory is bounded
        (at least one document is always claimed)."""
        if self.capacity == 0:
            return claim_size * window_chars
        return claim_size * self.capacity * 4


def model_chunking(model: ModelConfig) -> ModelChunking:
    if model.chunking == "none":
        # The text whole, cut by the model at max_tokens where the config sets it (else at the
        # model's own window): the fingerprint names it, so changing it embeds again. No
        # tokenizer is read, so a model named by a hub id needs no local files for this.
        size = model.max_tokens
        window = None if size is None else Window(size, 0, 0)
        chunker = make_chunker("none", window=window, tokenizer=None, vectors=vectors_key(model))
        return ModelChunking(chunker, 0)
    where = f'[[models]] "{model.name}"'
    tokenizer, size = _tokenizer_and_window(model, where)
    if tokenizer is not None:
        window = Window.of(tokenizer, size, model.prefix)
    else:
        window = Window(size, 2, math.ceil(len(model.prefix) / CHARS_PER_TOKEN))
    if model.chunk_tokens is not None:
        if model.chunk_tokens > window.capacity:
            raise ConfigError(
                f"config: {where} chunk_tokens = {model.chunk_tokens} does not fit the model's"
                f" window of {window.size} tokens ({window.capacity} after {window.special}"
                f" special tokens and the prefix); set chunk_tokens <= {window.capacity}"
            )
        size = model.chunk_tokens + window.special + window.prefix
        window = Window(size, window.special, window.prefix)
    chunker = make_chunker(
        model.chunking,
        window=window,
        tokenizer=tokenizer,
        max_chunks=model.max_chunks,
        vectors=vectors_key(model),
    )
    return ModelChunking(chunker, window.capacity)


def vector_settings(model: ModelConfig) -> dict[str, object]:
    """What decides a passage's vector besides its text, as readable values: the backend and
    the model it names, the prefix, normalisation, the window (`max_tokens`), the dimensions
    asked of a server and its options. A pair records them (embedkeeper.pairs.vector_settings)
    so that a config changing them under the same model name is refused with the old and new
    values (store/pair/vector_settings.py). Where the model is served from (`url`, `device`),
    batch sizes and timeouts do not change a vector and are left out."""
    return {
        "backend": model.backend,
        "model": model.model,
        "prefix": model.prefix,
        "normalize": model.normalize,
        "max_tokens": model.max_tokens,
        "dimensions": model.dimensions if model.request_dimensions else None,
        "options": dict(model.options or {}),
    }


def vectors_key(model: ModelConfig) -> str:
    """A short hash of vector_settings(model). It ends the chunking fingerprint, so a stored
    vector is kept for an equal passage only under the same settings, and a change of them
    embeds again."""
    text = json.dumps(vector_settings(model), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:VECTORS_KEY_CHARS]


def _tokenizer_and_window(model: ModelConfig, where: str) -> tuple[Tokenizer | None, int]:
    if model.backend == "sentence-transformers":
        ref: str | None = model.model
    elif model.is_http:
        ref = model.tokenizer
    else:  # null: no model, a character budget
        ref = None
    if ref is None:
        return None, model.max_tokens or SERVER_WINDOW
    tokenizer = load_tokenizer(ref)
    size = model.max_tokens or window_of(find_tokenizer_file(ref).parent, where)
    return tokenizer, size
