"""Text the harness and the reports share: an error in one line, a Markdown table cell, the report keys."""

from __future__ import annotations

# The keys of what a test's report carries in its user_properties: pytest copies them into every report
# and xdist sends them from its workers to the controller, where the reports read them.
QUESTION = "question"  # the question the test belongs to (its module's `question` mark)
STUDENT_CODE = "student_code"  # where in the student's code a failure happened
NOTE = "note"  # a remark on a failure: a name bound only by skipped code
NOT_GRADED = "not_graded"  # the grader's own failure (its sandbox did not start): why there is no grade
MEASURED = "measured"  # a value for the report's table (spec/harness/measure.py)
SERIES = "series"  # data for one of the report's plots


def accuracy_key(epochs: int) -> str:
    """The stable key of a `measured` record of test accuracy after `epochs` epochs (Q31's, Q33's), which the
    grade report reads whatever the record's label says."""
    return f"accuracy after {epochs} epochs"


def one_line(err: BaseException) -> str:
    """An exception's message in one line: its first, or its repr where it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def markdown_cell(text: str) -> str:
    """`text` as one cell of a Markdown table: its pipes escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")
