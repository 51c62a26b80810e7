"""Micro-benchmarks: `python -m benchmarks [filter ...]` runs every bench_*.py module's main()."""
