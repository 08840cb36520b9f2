"""`python -m mnist_lab train | sweep | evaluate | show`: the assignment's main job, and more.

Grading notebooks is the spec's job, from a checkout: `python -m spec.grade` (docs/grading.md)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import tuning
from .data import DATA_ENV, load_tensors, show
from .engines import ENGINES
from .errors import DataError, InputError
from .fast_cpu import BACKWARDS
from .files import load_weights, save_weights, write_json
from .model import LeNet
from .recipe import RECIPES
from .sweep import SWEEP_ENGINES, Summary, parse_seeds, train_many
from .train import TrainingDivergedError, TrainOptions, TrainResult, choose_device, evaluate, train


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least`."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
        return value

    return parse


_positive_int, _count = _at_least(1), _at_least(0)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**32-1, not {value}")
    return value


def _seeds(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"seeds {text!r}: ")) from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value




def _momentum(text: str) -> float:
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {value}")
    return value


def _train_options(run: argparse.ArgumentParser, data_help: str) -> None:
    run.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="default",
        help="default: the package's (He init, lr 0.05 warmed up over 100 steps and decayed linearly to 0); "
        "assignment: exactly the printed one",
    )
    run.add_argument("--epochs", type=_positive_int, default=3)
    run.add_argument("--batch-size", type=_positive_int, help="minibatch size (default: the recipe's, 100)")
    run.add_argument("--lr", type=_positive_float, help="learning rate (default: the recipe's)")
    run.add_argument("--momentum", type=_momentum, help="in [0, 1) (default: the recipe's, 0.9)")
    run.add_argument("--warmup", type=_count, help="steps of linear learning-rate warm-up (default: the recipe's)")
    run.add_argument("--seed", type=_seed, default=0)
    run.add_argument(
        "--threads", type=_positive_int,
        help="CPU threads to train with (default: the count a few timed steps find fastest; fix it to reproduce a run)",
    )  # fmt: skip
    run.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="auto: the fast CPU step for LeNet on the CPU, its backward pass timed on the first steps (autograd's "
        "among them), else autograd; fast_cpu: the fast CPU step; autograd: the plain step",
    )  # fmt: skip
    run.add_argument(
        "--backward", choices=BACKWARDS,
        help="the fast CPU step's backward pass (default: the one its first steps time fastest; fix it, the engine "
        "and --threads to reproduce a run)",
    )  # fmt: skip
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--data", help=data_help)
    run.add_argument("--json", metavar="PATH", help="write the results as one JSON object")
    run.add_argument("--save", metavar="PATH", help="write the trained weights (a weights-only state dict)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnist_lab", description="LeNet-5 on MNIST, as the course assignment does it.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    data_help = f"MNIST folder (default: ${DATA_ENV}, else the embedded data/mnist)"

    _train_options(commands.add_parser("train", help="train LeNet-5 and report its test accuracy"), data_help)

    sw = commands.add_parser("sweep", help="train one recipe on many seeds: each seed's accuracy and their spread")
    sw.add_argument("--seeds", type=_seeds, default=parse_seeds("0-7"), help="e.g. 0-31 or 0,3,7 (default 0-7)")
    sw.add_argument("--recipe", choices=sorted(RECIPES), default="default")
    sw.add_argument("--epochs", type=_positive_int, default=3)
    sw.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sw.add_argument(
        "--engine", choices=SWEEP_ENGINES, default="auto",
        help="vmap: all seeds in one batched step (auto on CUDA); sequential: one run after another (auto on the "
        "CPU); bmm: vmap's batched step written out as batched matrix products",
    )  # fmt: skip
    sw.add_argument("--data", help=data_help)
    sw.add_argument("--json", metavar="PATH", help="write every seed's accuracies and the summary as one JSON object")

    ev = commands.add_parser("evaluate", help="report the test accuracy of saved weights")
    ev.add_argument("--weights", required=True, metavar="PATH")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--data", help=data_help)

    sh = commands.add_parser("show", help="draw one digit in the terminal, or to a PNG")
    sh.add_argument("--dataset", choices=("training", "testing"), default="training")
    sh.add_argument("--index", type=_int, default=0)
    sh.add_argument("--png", metavar="PATH", help="also write the digit as a PNG")
    sh.add_argument("--data", help=data_help)

    return parser


def _output(option: str, path: str | None) -> Path | None:
    """Check before any work that `path` can be written: its folder exists, it is not a folder."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {path}: is a folder, not a file")
    if not target.parent.is_dir():
        raise InputError(f"{option} {path}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise InputError(f"{option} {path}: cannot write into {target.parent}")
    return target.resolve()


def _validate(args: argparse.Namespace) -> None:
    """What argparse cannot judge alone, checked before any data is read or work done."""
    if args.command in ("train", "evaluate", "sweep"):
        choose_device(args.device)
    if args.command == "sweep":
        _output("--json", args.json)
    if args.command == "train":
        outputs = {option: _output(option, path) for option, path in (("--json", args.json), ("--save", args.save))}
        if outputs["--json"] is not None and outputs["--json"] == outputs["--save"]:
            raise InputError(f"--json and --save both name {args.json}: give each its own file")
    if args.command == "show":
        _output("--png", args.png)


def _train(args: argparse.Namespace) -> None:
    device = choose_device(args.device)
    overrides = {
        k: v
        for k, v in (
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("momentum", args.momentum),
            ("warmup", args.warmup),
        )
        if v is not None
    }
    recipe = dataclasses.replace(RECIPES[args.recipe], **overrides)
    xtrain, ltrain = load_tensors("training", args.data)
    xtest, ltest = load_tensors("testing", args.data)
    print(f"recipe {recipe}, {args.epochs} epochs, seed {args.seed}, device {device}, torch {torch.__version__}")
    accuracies: list[float] = []

    def report(epoch: int, progress: TrainResult) -> None:
        accuracies.append(evaluate(progress.net, xtest, ltest))
        print(
            f"epoch {epoch}: {progress.epoch_seconds[-1]:.2f} s training, test accuracy {accuracies[-1]:.2f}%",
            flush=True,
        )

    options = TrainOptions(
        epochs=args.epochs, seed=args.seed, device=device, engine=args.engine, threads=args.threads,
        backward=args.backward,
    )  # fmt: skip
    result = train(xtrain, ltrain, recipe, options, on_epoch=report)
    print(f"test accuracy: {accuracies[-1]:.2f}%")
    print(engine_line(result.engine))
    if args.save:
        save_weights(result.net, args.save)
    if args.json:
        write_json(
            args.json,
            {
                "test_accuracy": accuracies[-1],
                "epoch_test_accuracy": accuracies,
                "epochs": args.epochs,
                "seed": args.seed,
                "device": str(device),
                "recipe": recipe.name,
                "hyperparameters": dataclasses.asdict(recipe),
                "torch_version": torch.__version__,
                "engine": result.engine,
                "cpu": tuning.cpu(),
                "epoch_seconds": result.epoch_seconds,
                "loss_log": result.loss_log,
            },
        )


def engine_line(engine: dict) -> str:
    """'engine fast_cpu: backward pass dilated, 2 threads, picked over 34 timed steps' (train()'s result.engine)."""
    parts = [f"backward pass {engine['backward']}"] if "backward" in engine else []
    if engine.get("threads") is not None:
        parts.append(f"{engine['threads']} thread{'s' * (engine['threads'] > 1)}")
    if engine.get("probe_steps"):
        how = "as picked in an earlier run" if engine["probe_replayed"] else "picked"
        parts.append(f"{how} over its first {engine['probe_steps']} steps")
    return f"engine {engine.get('engine', '?')}" + (f": {', '.join(parts)}" if parts else "")


def _sweep(args: argparse.Namespace) -> None:
    device = choose_device(args.device)
    recipe = RECIPES[args.recipe]
    xtrain, ltrain = load_tensors("training", args.data)
    xtest, ltest = load_tensors("testing", args.data)
    print(
        f"sweep: recipe {recipe.name}, {args.epochs} epochs, {len(args.seeds)} seeds, device {device}, "
        f"engine {args.engine}, torch {torch.__version__}; test accuracy (%) after each epoch:"
    )
    accuracies: dict[int, list[float]] = {}

    def report(seed: int, epoch: int, result: TrainResult) -> None:
        accuracies.setdefault(seed, []).append(evaluate(result.net, xtest, ltest))
        if epoch == args.epochs:
            print(f"seed {seed:>4}: " + " ".join(f"{a:6.2f}" for a in accuracies[seed]), flush=True)

    start = time.perf_counter()
    train_many(
        xtrain, ltrain, args.seeds, recipe=recipe, epochs=args.epochs, device=device, engine=args.engine,
        on_epoch=report,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    summary = Summary.of([accuracies[seed][-1] for seed in args.seeds], args.epochs)
    print(summary.line())
    rate = len(args.seeds) * args.epochs / seconds
    print(f"{seconds:.1f} s in all, {rate:.2f} seed-epochs a second, evaluation included")
    if args.json:
        write_json(
            args.json,
            {
                "recipe": recipe.name,
                "epochs": args.epochs,
                "device": str(device),
                "engine": args.engine,
                "threads": torch.get_num_threads() if device.type == "cpu" else None,
                "cpu": tuning.cpu(),
                "torch_version": torch.__version__,
                "seconds": seconds,
                "runs": [
                    {"seed": seed, "test_accuracy": accuracies[seed][-1], "epoch_test_accuracy": accuracies[seed]}
                    for seed in args.seeds
                ],
                "summary": dataclasses.asdict(summary),
            },
        )


def _evaluate(args: argparse.Namespace) -> None:
    device = choose_device(args.device)
    net = load_weights(LeNet(), args.weights).to(device)
    xtest, ltest = load_tensors("testing", args.data)
    print(f"test accuracy: {evaluate(net, xtest, ltest):.2f}%")


def _show(args: argparse.Namespace) -> None:
    images, labels = load_tensors(args.dataset, args.data)
    if not -len(images) <= args.index < len(images):
        raise InputError(f"--index {args.index} is outside the {len(images)} {args.dataset} images")
    print(show(images[args.index], args.png))
    print(f"{args.dataset} image {args.index}: label {int(labels[args.index])}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _validate(args)
        {"train": _train, "sweep": _sweep, "evaluate": _evaluate, "show": _show}[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
    except InputError as err:  # arguments that only the work itself can judge
        print(f"mnist_lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped reading (`| head`): a normal end. Point stdout at /dev/null so
        # that the interpreter's last flush does not fail on the closed pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (DataError, TrainingDivergedError, OSError) as err:
        print(f"mnist_lab {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mnist_lab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
