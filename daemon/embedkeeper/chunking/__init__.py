"""Cutting a document into passages that each fit the model's window.

A model sees at most its window (256 tokens for MiniLM); a longer text used to be cut there and
the rest never embedded. A Chunker splits the whole text into chunks of at most `capacity`
tokens of the model's own tokenizer (or a character budget where no tokenizer is known), at
paragraph and sentence boundaries where it can, with `overlap` tokens shared between neighbours.
The splitting itself is semantic-text-splitter's (a maintained Rust library, measured against the
alternatives in ../shared/research/chunking.md and BENCHMARKS.md); this room adds the window
arithmetic, a cap on chunks per document, and bounded memory for huge texts.
"""

from __future__ import annotations

from embedkeeper.chunking.chunker import Chunk, Chunker, Chunking, make_chunker
from embedkeeper.chunking.tokenizer import Window, load_tokenizer

__all__ = ["Chunk", "Chunker", "Chunking", "Window", "load_tokenizer", "make_chunker"]
