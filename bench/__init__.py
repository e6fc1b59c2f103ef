"""Hand-run benchmarks (see docs/benchmarks.md)."""
