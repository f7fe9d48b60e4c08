"""Read paths that answer questions: the nearest chunks by vector, and by vector and words fused."""
