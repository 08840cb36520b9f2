"""The harness's own tests, beside the notebooks they grade: fixtures/ (the printed solution), broken/ (mistakes)."""
