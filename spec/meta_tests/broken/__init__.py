"""Deliberately broken notebooks: the common mistakes of this assignment, each the printed solution
(spec/meta_tests/fixtures/printed_solution.ipynb) with one change (spec/meta_tests/broken/mistakes.py lists them).
meta_tests/test_can_fail.py grades each and expects exactly the questions it breaks to fail."""
