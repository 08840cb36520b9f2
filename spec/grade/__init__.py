"""Grading a folder of notebooks, each in a process of its own: `python -m spec.grade`."""
