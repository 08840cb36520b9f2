"""Loads the spec's pytest plugin (options, hooks, the run's state) and its fixtures: spec/harness."""

pytest_plugins = [
    "spec.harness.plugin",
    "spec.harness.fixtures",
    "pytester",  # spec/meta_tests/test_cuda_health.py runs pytest inside pytest
]
