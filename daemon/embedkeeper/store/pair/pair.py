"""One (source, model) pair, as every part of the code means it.

A pair is what embedkeeper keeps in step: one source's documents embedded by one model, in the
pair's own tables. Before Pair, a pair travelled as a model, a source (or None for the first),
the model's name as a string and the statements over its tables, each passed on its own, and
each callee put them together again. A Pair is made once, when the app opens (App.pairs), from
the config and what the database records (the source key's type, the model's registered
dimensions), and is passed whole: the callee reads the part it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedkeeper.config import ModelConfig, SourceConfig
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.source.queries import PairQueries


@dataclass(frozen=True, slots=True)
class Pair:
    """`key_type`: the source key's type family (bigint, text, uuid), as the preflight read it.
    `dimensions`: the vectors' size where known without loading the model (the config's, else
    the registry's); None until the model's first load tells. `chunking`: the chunker's
    fingerprint of the config (what the pair's records must carry to be current); None where
    the model's tokenizer is not installed here (`migrate` from an install without the model):
    such a process records nothing of chunking and runs no pass. `names`: every relation's
    name (models/pairs.py); `statements`: the SQL over them and the source."""

    source: SourceConfig
    model: ModelConfig
    key_type: str
    dimensions: int | None
    chunking: str | None
    names: PairNames
    statements: PairQueries

    @classmethod
    def of(
        cls,
        source: SourceConfig,
        model: ModelConfig,
        key_type: str,
        *,
        dimensions: int | None = None,
        chunking: str | None = None,
    ) -> Pair:
        names = PairNames.of(source.source_name, model.name)
        statements = PairQueries(source, key_type, names)
        return cls(source, model, key_type, dimensions, chunking, names, statements)

    @property
    def source_name(self) -> str:
        return self.source.source_name

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def storage(self) -> str:
        """How the vectors are stored: `vector` (fp32) or `halfvec` (fp16)."""
        return self.model.storage
