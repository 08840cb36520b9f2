"""What a test measured, recorded for the report (`pytest spec --report DIR`, spec/reports/spec_report.py).

A test asks for the `measure` fixture (spec/harness/fixtures.py) and calls it with what it measured:

    measure("accuracy after 3 epochs", run.accuracy, device, unit="%")
    measure.series("loss", recipe="assignment", device="cpu", points=run.log)

Each record goes into the test's `user_properties`, which pytest copies into the test's reports and
xdist sends from its workers to the controller: the report is built from the run itself, under
`-n auto` too. Values are made plain (numbers, strings, lists) so that they travel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from spec.harness.text import MEASURED, SERIES


def plain(value: Any) -> Any:
    """Tensors, arrays, tuples and NumPy scalars as plain Python numbers, strings and lists."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _device_name(device: torch.device | str) -> str:
    return device.type if isinstance(device, torch.device) else str(device)


class Measure:
    """The `measure` fixture: records what one test measured."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def __call__(
        self, name: str, value: Any, device: torch.device | str = "cpu", unit: str = "", key: str | None = None
    ) -> None:
        """A value for the report's table: `name` = `value` `unit`, measured on `device`. `key`, for a value
        other reports read too, names it for them (spec/harness/text.py), whatever its label says."""
        record = {"name": name, "value": plain(value), "device": _device_name(device), "unit": unit}
        if key is not None:
            record["key"] = key
        self._item.user_properties.append((MEASURED, record))

    def series(self, kind: str, device: torch.device | str = "cpu", **data: Any) -> None:
        """Data for one of the report's plots: "loss", "accuracy" or "digit" (spec/reports/plots.py says what each
        takes)."""
        record = {"kind": kind, "device": _device_name(device), **plain(data)}
        self._item.user_properties.append((SERIES, record))
