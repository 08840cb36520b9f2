"""`python -m spec.gradescope build|run`: Gradescope's autograder (docs/gradescope.md).

    python -m spec.gradescope build [--out autograder.zip] [--rubric rubric.toml] [--torch-index URL]
    python -m spec.gradescope run [--root /autograder] [--timeout SECONDS]    (what run_autograder calls)

A bad argument or rubric is one line and exit 2; `run` exits 0 once results.json is written, whatever the
submission was.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spec.grade.arguments import OneLineParser, positive
from spec.grade.rubric import Rubric, RubricError
from spec.gradescope.build import BuildError, build
from spec.gradescope.run import run

PROG = "python -m spec.gradescope"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Gradescope's autograder for the assignment.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    make = commands.add_parser("build", help="write autograder.zip, to upload to Gradescope")
    make.add_argument("--out", default="autograder.zip", metavar="PATH", help="the zip (default autograder.zip)")
    make.add_argument("--rubric", metavar="TOML", help="points and visibility per question (default: 1 point each)")
    make.add_argument("--torch-index", metavar="URL", help="pip's index for torch in setup.sh (its CPU builds)")
    grade = commands.add_parser("run", help="grade ROOT/submission into ROOT/results/results.json")
    grade.add_argument("--root", default="/autograder", type=Path, help="Gradescope's folder (default /autograder)")
    grade.add_argument("--timeout", default=3000, type=positive(float, "number"),
                       help="seconds for the grading (default 3000)")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "build":
            return _build(args)
        data = run(args.root, args.timeout)
    except RubricError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(f"{args.root / 'results' / 'results.json'}: {data['output'].splitlines()[0]}")
    return 0


def _build(args: argparse.Namespace) -> int:
    try:
        rubric = Rubric.load(Path(args.rubric)) if args.rubric else Rubric()
        out = Path(args.out)
        if not out.parent.is_dir():
            raise BuildError(f"--out {args.out}: folder {out.parent} does not exist")
        names = build(out, rubric, args.torch_index)
    except (RubricError, BuildError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(f"{out}: {len(names)} files; upload it as the assignment's autograder (docs/gradescope.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
