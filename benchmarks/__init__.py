"""The benchmark harness: `python -m benchmarks.run --help` (see benchmarks/README.md)."""
