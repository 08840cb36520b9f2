"""What the spec's command lines (`python -m spec.grade`, `python -m spec.gradescope`) share: a parser whose
error is one line and exit 2, and a positive-number argument type."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(cast: Callable[[str], float], kind: str) -> Callable[[str], float]:
    """An argparse type: a finite number above 0, read by `cast`; `kind` names it in the message."""

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind}: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be positive and finite, not {value}")
        return value

    return parse
