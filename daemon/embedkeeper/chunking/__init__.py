"""Cutting a document into passages that each fit the model's window.

A model sees at most its window (256 tokens for MiniLM); a longer text used to be cut there and
the rest never embedded. A Chunker splits the whole text into chunks of at most `capacity`
tokens of the model's own tokenizer (or a character budget where no tokenizer is known), at
paragraph, sentence and line ends chosen by the text around them (boundaries.py), so an edit
moves only the cuts near it. Each text is tokenized once, with offsets, by the model's fast
tokenizer (`tokenizers`; semantic-text-splitter and chonkie were measured beside it, BENCHMARKS.md
"What an edit costs": both pack greedily); this room adds the boundary rule, the window
arithmetic, a cap on chunks per document, and bounded memory for huge texts.
"""

from __future__ import annotations

from embedkeeper.chunking.chunker import Chunk, Chunker, Chunking, make_chunker
from embedkeeper.chunking.tokenizer import Window, load_tokenizer

__all__ = ["Chunk", "Chunker", "Chunking", "Window", "load_tokenizer", "make_chunker"]
