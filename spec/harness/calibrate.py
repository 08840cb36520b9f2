"""Calibrate Q29-Q33's bounds: the printed recipe over many seeds, as the spec trains it.

    python -m spec.harness.calibrate --seeds 0-23 --epochs 10 [--device cpu] [--threads 1]

Each seed is one `spec.harness.cells.train_as_printed` run (the implementation's LeNet and backprop_deep,
T=epochs), evaluated after every epoch; the state after epoch 3 of a T=10 run is the state a T=3
run ends in, since the printed recipe's learning rate is constant. One line per seed: the first and
last printed losses and the accuracy after epochs 1, 3 and the last; then min, mean and max.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spec.harness.cells import as_tensors, normalize_as_printed, train_as_printed
from spec.harness.impl import implementation


def seeds(text: str) -> list[int]:
    """'0-23' or '0,3,7' -> the seeds, in order."""
    try:
        spans = [part.partition("-") for part in text.split(",")]
        return [seed for first, _, last in spans for seed in range(int(first), int(last or first) + 1)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not seeds like 0-23 or 0,3,7: {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seeds, default=seeds("0-7"), help="e.g. 0-23 or 0,3,7")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--impl", default="mnist_lab", help="the implementation to train (default mnist_lab)")
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be at least 3")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    impl = implementation(args.impl)
    data = {split: as_tensors(*impl.load(split), normalize_as_printed) for split in ("training", "testing")}
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        run = train_as_printed(impl, data, device, args.epochs, seed)
        per_epoch = [value for _, value in run.epoch_accuracy]
        if len(per_epoch) != args.epochs:
            raise SystemExit(f"the loop under test let {len(per_epoch)} of {args.epochs} epochs be seen ending")
        losses = [loss for _, _, loss in run.log]
        rows.append((losses[0], losses[17], losses[-1], per_epoch))
        print(
            f"seed {seed:3d}: loss first {rows[-1][0]:.3f}, end of epoch 3 {rows[-1][1]:.3f}, last {rows[-1][2]:.3f}; "
            f"accuracy " + " ".join(f"{a:.2f}" for a in per_epoch) + f"  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    columns = {
        "first printed loss": [r[0] for r in rows],
        "printed loss, end of epoch 3": [r[1] for r in rows],
        f"printed loss, end of epoch {args.epochs}": [r[2] for r in rows],
        "accuracy after epoch 1": [r[3][0] for r in rows],
        "accuracy after epoch 3": [r[3][2] for r in rows],
        f"accuracy after epoch {args.epochs}": [r[3][-1] for r in rows],
    }
    print(f"{len(rows)} seeds, {args.device}, torch {torch.__version__}:")
    for name, values in columns.items():
        print(f"  {name}: min {min(values):.3f}, mean {statistics.mean(values):.3f}, max {max(values):.3f}")


if __name__ == "__main__":
    main()
