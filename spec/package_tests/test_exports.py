"""The package provides every name of the graded contract (spec/harness/contract.py), as the assignment names it."""

from __future__ import annotations

import mnist_lab
from spec.harness import contract


def test_the_package_provides_the_contract() -> None:
    missing = [name for name in contract.CONTRACT if name not in mnist_lab.__all__ or not hasattr(mnist_lab, name)]
    assert not missing, f"mnist_lab lacks {missing} of the contract"
