"""Pure helpers for shaping batches: splitting to isolate a poison document, checking vectors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")


def halves(items: Sequence[T]) -> tuple[Sequence[T], Sequence[T]]:
    """Split a rejected batch in two; recursing on each half finds the culprits in O(k log n)."""
    middle = math.ceil(len(items) / 2)
    return items[:middle], items[middle:]


def vector_problem(vector: npt.NDArray[np.float32], dimensions: int) -> str | None:
    """Why this vector must not be stored, or None when it is fine."""
    if vector.ndim != 1 or vector.shape[0] != dimensions:
        return f"expected a {dimensions}-d vector, got shape {tuple(vector.shape)}"
    if not np.all(np.isfinite(vector)):
        return "vector has NaN or infinite values"
    if not np.any(vector):
        return "vector has zero norm"
    return None
