"""Token counts for a server's documents, from the model's own tokenizer (the `tokenizer` key).

A server's `usage` cannot be trusted to mean tokens (infinity counts characters by default) and
covers a whole request, not each input; it says nothing about truncation either. With the model's
tokenizer we count each text as the model sees it (special tokens and the prefix included) and
know it was cut when it is longer than the window: the window the config states (`max_tokens`),
else the one the tokenizer's model directory states (sentence-transformers' max_seq_length, which
is what a server running the model through sentence-transformers, like infinity, cuts at).
"""

from __future__ import annotations

from collections.abc import Sequence

from embedkeeper.chunking.tokenizer import find_tokenizer_file, load_tokenizer, window_of


class TokenCounter:
    """Counts tokens as the model sees them, up to one past its window (enough to tell a text
    was cut, and cheap on a text of megabytes)."""

    def __init__(self, ref: str, window: int | None, where: str) -> None:
        self.ref = ref
        self.window = window or window_of(find_tokenizer_file(ref).parent, where)
        self.tokenizer = load_tokenizer(ref)
        self.tokenizer.enable_truncation(self.window + 1)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, special tokens included, at most window + 1."""
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [len(item.ids) for item in encoded]
