"""Gradescope's autograder: `python -m spec.gradescope build` makes autograder.zip, whose `run_autograder` grades
the submission with the spec and writes Gradescope's results.json (docs/gradescope.md)."""
