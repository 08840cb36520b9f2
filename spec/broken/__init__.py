"""Deliberately broken notebooks: the common mistakes of this assignment, each the printed solution
(spec/fixtures/printed_solution.ipynb) with one change (spec/broken/mistakes.py lists them).
test_spec_can_fail.py grades each and expects exactly the questions it breaks to fail."""
