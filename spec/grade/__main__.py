"""`python -m spec.grade SUBMISSIONS... --out grades.csv`: the spec's questions on each of a folder of notebooks.
`--shard K/N` grades the K-th of N stable slices (a machine, a Slurm array task, a CI matrix job);
`python -m spec.grade merge PART.json... --out grades.csv` joins the slices' batches into one.

Runs from a checkout of mnist-lab (the spec is not in the installed package). One line per notebook as
it is graded; a bad argument is one line and exit 2; exit 1 where a notebook could not be graded.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from spec.grade.arguments import OneLineParser, positive
from spec.grade.batch import GradingError, grade, merge
from spec.grade.rubric import Rubric, RubricError
from spec.harness.contract import QuestionsError, parse_questions

PROG = "python -m spec.grade"


def _questions(text: str) -> list[str]:
    try:
        return parse_questions(text)
    except QuestionsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _shard(text: str) -> tuple[int, int]:
    k, slash, n = text.partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N with 1 <= K <= N (e.g. 2/3)")
    return int(k), int(n)


def _pytest_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {err}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Grade notebooks with the spec: a CSV row each, and a JSON report.")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="notebooks, scripts, or folders of them")
    parser.add_argument("--out", default="grades.csv", metavar="PATH", help="the CSV (default grades.csv); JSON beside")
    count, seconds = positive(int, "whole number"), positive(float, "number")
    parser.add_argument("--jobs", type=count, default=0, help="notebooks graded at once (default: one a core, as "
                        "memory allows)")  # fmt: skip
    parser.add_argument("--timeout", type=seconds, default=3600, help="seconds for one notebook (default 3600)")
    parser.add_argument(
        "--questions", type=_questions, default=[], metavar="Q,...",
        help="grade only these, e.g. Q21,Q26,Q29-Q30 (default: every question)",
    )  # fmt: skip
    parser.add_argument("--rubric", metavar="TOML", help="points per question (docs/gradescope.md; default 1 each)")
    parser.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N",
                        help="grade only the K-th of N slices of the submissions (merge them with `merge`)")
    parser.add_argument(
        "--pytest-args", type=_pytest_args, default=[], metavar="ARGS",
        help="more arguments for pytest, e.g. \"-m 'not training'\" to leave out the questions that train",
    )  # fmt: skip
    return parser


def _out(path: str) -> Path:
    """The CSV's path, checked before any work: a file in a folder that exists and can be written."""
    out = Path(path)
    problems = {
        "is a folder, not a file": out.is_dir(),
        f"folder {out.parent} does not exist": not out.parent.is_dir(),
        f"cannot write into {out.parent}": not os.access(out.parent, os.W_OK),
        "name the CSV; the JSON is written beside it": out.suffix == ".json",
    }
    first = next((problem for problem, found in problems.items() if found), None)
    if first is not None:
        raise GradingError(f"--out {path}: {first}")
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a kill, a shutdown) ends a batch as Ctrl-C does: what was graded is kept


def merge_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=f"{PROG} merge", description="Join the batches of several shards into one.")
    parser.add_argument("parts", nargs="+", metavar="PART.json", help="each shard's batch JSON (beside its CSV)")
    parser.add_argument("--out", default="grades.csv", metavar="PATH", help="the CSV (default grades.csv); JSON beside")
    parser.add_argument("--rubric", metavar="TOML", help="points per question, as the shards were graded with")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    merging = argv[:1] == ["merge"]
    args = (merge_parser() if merging else build_parser()).parse_args(argv[1:] if merging else argv)
    try:
        out = _out(args.out)
        rubric = Rubric.load(Path(args.rubric)) if args.rubric else None
        if merging:
            batch = merge(args.parts, out, rubric)
        else:
            batch = grade(args.submissions, out, jobs=args.jobs, timeout=args.timeout, questions=args.questions,
                          pytest_args=args.pytest_args, rubric=rubric, shard=args.shard)  # fmt: skip
    except (GradingError, RubricError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: what was graded is in {args.out}; the same command grades the rest",
              file=sys.stderr)  # fmt: skip
        return 130
    print(f"grades: {out}, {out.with_suffix('.json')}")
    return 1 if batch.failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
