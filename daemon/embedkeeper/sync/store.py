"""What the loop asks of the database: a small Protocol, so that sync/pipeline.py runs no SQL
(store/pass_io/pg_store.py is the implementation; the unit tests use an in-memory one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from embedkeeper.records import ChunkedEmbedding, Claimed, Document, DocumentId, Rejected

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class Store(Protocol):
    def claim(self, after: object | None, limit: int) -> Claimed: ...

    def save(self, embedded: Sequence[ChunkedEmbedding]) -> int:
        """Write each document's chunks whole, clear their failures, release them; returns how
        many documents were written."""
        ...

    def fail(self, rejected: Sequence[Rejected]) -> None:
        """Charge one attempt to each document and release it."""
        ...

    def stored_vectors(
        self, passages: Sequence[tuple[DocumentId, str]]
    ) -> list[npt.NDArray[np.float32] | None]:
        """For each (document, passage): the vector the pair already holds for that passage of
        that document, made under this pass's vector settings, or None. Asked only for documents
        claimed as `reusable`."""
        ...

    def release(self, documents: Sequence[Document]) -> None: ...

    def begin(self, documents: Sequence[Document]) -> int:
        """Record the batch as in flight (if the process dies now, its documents get charged)."""
        ...

    def end(self, token: int) -> None: ...
