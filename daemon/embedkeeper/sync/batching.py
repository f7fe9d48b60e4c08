"""Pure helpers for batches: checking the vectors a backend returned."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def vector_problem(vector: npt.NDArray[np.float32], dimensions: int) -> str | None:
    """Why this vector must not be stored, or None when it is fine."""
    if vector.ndim != 1 or vector.shape[0] != dimensions:
        return f"expected a {dimensions}-d vector, got shape {tuple(vector.shape)}"
    if not np.all(np.isfinite(vector)):
        return "vector has NaN or infinite values"
    if not np.any(vector):
        return "vector has zero norm"
    return None
