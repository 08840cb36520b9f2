"""Deliberately broken implementations: `spec/test_spec_can_fail.py` runs the spec on
each and expects the questions it breaks to fail. Each module is mnist_lab with one
defect."""
