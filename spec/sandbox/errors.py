"""What the sandbox raises: plain exceptions, one line each, that the harness (spec/harness/plugin.py), a
batch or a script turns into what it reports. Nothing here knows of pytest."""

from __future__ import annotations


class SandboxError(Exception):
    """The grader could not start a worker: the grader's failure, never the student's (no student code had
    run when it happened). One line that says why."""


class WorkerError(Exception):
    """The worker died, hung or answered with what is not a message: one line that says how."""


class CallError(Exception):
    """A graded call failed in a way that is no exception of the student's own: it exited, flooded its output,
    returned what grading cannot read, or its worker died or hung. One line that names the call; the test
    that made it fails with that line."""


class StudentCodeError(Exception):
    """What the student's code raised, rebuilt under its own name (for grading's messages)."""

    student_location: str | None = None
