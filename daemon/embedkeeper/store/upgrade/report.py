"""What carrying a v0.1 database did (store/upgrade/carry.py), as `embedkeeper migrate` prints it.

The operator's questions after an upgrade: did every vector and failure arrive, is search still
indexed, and will anything be embedded again (a model whose config asks for chunking re-embeds
every carried document, and says how to keep the old vectors instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from embedkeeper.models.pairs import RelationNames
from embedkeeper.store.upgrade.index import CarriedIndex


@dataclass(frozen=True, slots=True)
class CarriedModel:
    model: str
    base: str  # the pair's tables are embedkeeper.<base>_documents, _chunks, _failures
    vectors: int  # each its document's one chunk
    superseded: int  # v0.1 vectors of documents the pair already had newer records of
    failures: int
    index: CarriedIndex
    chunking: str  # the model's [[models]] chunking
    reembed: int  # documents the next passes embed again (all carried, unless chunking "none")


@dataclass(frozen=True, slots=True)
class LeftModel:
    """A model with rows in the shared tables but no [[models]] entry: not carried."""

    model: str
    vectors: int


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    source: str  # the source's name: the pairs' tables start with it
    carried: tuple[CarriedModel, ...]
    left: tuple[LeftModel, ...]

    def lines(self) -> list[str]:
        """Short lines for the terminal; warnings start with "warning:". None when there was
        nothing of v0.1's to carry or leave (a new database, or one carried before): the log
        says so (v01_nothing_to_carry)."""
        if not self.carried and not self.left:
            return []
        if self.carried:
            lines = [f'v0.1 rows carried into the pairs of source "{self.source}":']
        else:
            lines = ["v0.1 upgrade: nothing to carry (no v0.1 rows of a [[models]] model left)"]
        for done in self.carried:
            lines += _model_lines(done)
        for model in self.left:
            lines.append(
                f'warning: model "{model.model}" has {model.vectors} vectors in'
                " embedkeeper.embeddings but no [[models]] entry: left there"
            )
            lines.append(f'  (add "{model.model}" to [[models]] and migrate again to carry them)')
        return lines


def _model_lines(done: CarriedModel) -> list[str]:
    name = done.model
    arrived = f"  {name}: {done.vectors} vectors, {done.failures} failures"
    arrived += f" -> embedkeeper.{RelationNames(done.base).documents}, _chunks, _failures"
    lines = [arrived]
    if done.superseded:
        lines.append(f"  {name}: {done.superseded} v0.1 vectors replaced by the pair's newer ones")
    lines += _index_lines(name, done.index)
    if done.reembed:
        lines.append(
            f'  {name}: chunking = "{done.chunking}", so {done.reembed} documents will be'
            " embedded again (old vectors serve meanwhile)"
        )
        lines.append(
            f'  {name}: to keep the old vectors instead, set chunking = "none" in its [[models]]'
        )
    else:
        lines.append(f"  {name}: nothing will be embedded again")
    return lines


def _index_lines(name: str, index: CarriedIndex) -> list[str]:
    old = f" (was {', '.join(index.old)})" if index.old else ""
    if index.state == "built":
        return [f"  {name}: index {index.name} built by migrate{old}"]
    if index.state == "deferred":
        return [
            f"  {name}: index {index.name} recorded as deferred{old}",
            f"  {name}: the next rebuild of deferred indexes builds it (embedkeeper index restore)",
        ]
    if index.state == "kept":
        return [f"  {name}: index {index.name} already there{old}"]
    if index.state == "dropped":
        return [f"  {name}: no vector index{old}: {index.detail}"]
    if index.old:
        return [f"  {name}: no vector index (only invalid ones, dropped: {', '.join(index.old)})"]
    return [f"  {name}: no vector index (it had none)"]
