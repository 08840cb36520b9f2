"""Benchmarks (pytest-benchmark): skipped in the test run, `pytest spec --benchmark-only -p no:xdist` runs them."""
