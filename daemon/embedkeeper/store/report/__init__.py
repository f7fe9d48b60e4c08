"""Read paths that count: coverage, the cheap backlog estimate, the failures under review."""
