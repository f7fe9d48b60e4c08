"""Benchmarks (`make bench`): measured side by side in one run, never in the test suite."""
