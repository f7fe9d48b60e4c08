"""The records that flow through one pass: a claimed document, its vector, or its failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DocumentId = int | str | UUID


@dataclass(frozen=True, slots=True)
class Document:
    """A claimed document. `text` is at most a prefix of the stored text (`cut` says whether it
    was cut): a model window is far smaller, and this keeps memory bounded for texts of many MB.
    `content_hash` is PostgreSQL's md5 of the whole stored text."""

    id: DocumentId
    text: str
    cut: bool
    content_hash: bytes
    updated_at: datetime | None = None
    suspect: bool = False  # its last batch died with its process: embed it alone


@dataclass(frozen=True, slots=True)
class Embedded:
    document: Document
    vector: npt.NDArray[np.float32]
    token_count: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    document: Document
    error_class: str
    message: str
