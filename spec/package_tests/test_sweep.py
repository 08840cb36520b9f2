"""mnist_lab.sweep: many seeds of one recipe. Each seed's run is train()'s with that seed, whichever engine
trains it; the seed list is parsed strictly; the summary counts the printed figure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from mnist_lab import RECIPES, InputError, TrainingDivergedError, TrainOptions, TrainResult, batched, fast_cpu, train
from mnist_lab.model import LeNet, he_init_
from mnist_lab.sweep import MAX_SEEDS, Summary, parse_seeds, train_many
from spec.package_tests.support import assert_same_weights

SEEDS = [0, 1, 2]
# As in package_tests/test_training.py, few steps at the default's 0.05, more at the printed 0.001, where rounding
# cannot yet have sent two runs apart: over 2 epochs, 40 minibatches and 4 (each epoch's last half full).
IMAGES = {"assignment": 1950, "default": 150}


@pytest.fixture(scope="module")
def subset(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    x, labels = mnist["training"]
    return x[:4000], labels[:4000]


@pytest.fixture(scope="module")
def train_runs(subset) -> Callable[[str, torch.device], list[TrainResult]]:
    """`runs(recipe, device)`: train() with each seed of SEEDS, 2 epochs of IMAGES[recipe], cuDNN's TF32 off;
    memoised, so that each engine's test compares with the same runs, made once."""
    runs: dict[tuple[str, str], list[TrainResult]] = {}

    def run(recipe: str, device: torch.device) -> list[TrainResult]:
        if (recipe, device.type) not in runs:
            x, labels = (t[: IMAGES[recipe]] for t in subset)
            chosen, options = RECIPES[recipe], TrainOptions(epochs=2, device=device, engine="autograd")
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                runs[recipe, device.type] = [
                    train(x, labels, chosen, dataclasses.replace(options, seed=seed), log=None) for seed in SEEDS
                ]
        return runs[recipe, device.type]

    return run


@pytest.mark.parametrize("engine", ["vmap", "bmm", "sequential"])
@pytest.mark.parametrize("recipe", ["assignment", "default"])
def test_each_seed_trains_as_train_does(subset, train_runs, device: torch.device, recipe: str, engine: str) -> None:
    """Same seeds, same data: train_many's weights and logged losses are train()'s with seed s, for each s.

    On CUDA both run with cuDNN's TF32 off: vmap turns the seeds' convolutions into one grouped
    convolution, whose TF32 rounding (10-bit mantissa) differs from a single one's by more than
    float32 rounding does, and bmm's are float32 matrix products; with TF32 off they agree to float32
    rounding."""
    x, labels = (t[: IMAGES[recipe]] for t in subset)
    chosen = RECIPES[recipe]
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        many = train_many(x, labels, SEEDS, recipe=chosen, epochs=2, device=device, engine=engine)
    wants = train_runs(recipe, device)
    assert len(many) == len(SEEDS), f"{len(many)} results for {len(SEEDS)} seeds"
    for seed, got, want in zip(SEEDS, many, wants, strict=True):
        assert_same_weights(got.net, want.net, f"seed {seed}, train_many({engine!r}) against train()")
        assert len(got.epoch_seconds) == 2, f"seed {seed}: {len(got.epoch_seconds)} epoch timings, not 2"
        assert [row[:2] for row in got.loss_log] == [row[:2] for row in want.loss_log], f"seed {seed}: loss log"


@pytest.mark.parametrize("n", [100, 37])
def test_bmm_gradients_are_vmaps(device: torch.device, n: int) -> None:
    """batched.lenet_grads against vmap(grad_and_value) of LeNet's cross-entropy: 3 seeds' own weights (He's, so
    that ReLUs fire), random images, a full minibatch and a short one; gradients to float32 rounding."""
    names = [name for name, _ in LeNet().named_parameters()]
    stacked = [torch.stack(ps) for ps in zip(*(he_init_(LeNet()).parameters() for _ in range(3)), strict=True)]
    params = tuple(p.detach().to(device) for p in stacked)
    x, labels = torch.randn(3, n, 1, 28, 28, device=device), torch.randint(0, 10, (3, n), device=device)
    base = LeNet().to("meta")

    def loss(ps: tuple[torch.Tensor, ...], x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, dict(zip(names, ps, strict=True)), (x,)), labels)

    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want, want_losses = vmap(grad_and_value(loss))(params, x, labels)
    got, got_losses = batched.lenet_grads(params, x, labels)
    torch.testing.assert_close(got_losses, want_losses, msg=lambda m: f"losses: {m}")
    for name, g, w in zip(names, got, want, strict=True):
        assert g.shape == w.shape, f"{name}: gradient {tuple(g.shape)}, not {tuple(w.shape)}"
        assert g.is_contiguous(), f"{name}: gradient not contiguous (fused SGD updates it with the weights)"
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_bmm_is_refused_where_torch_lacks_its_overloads(subset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_cpu, "supported", lambda: False)
    with pytest.raises(InputError, match="engine bmm calls aten overloads"):
        train_many(*(t[:100] for t in subset), [0], epochs=1, device="cpu", engine="bmm")


def test_the_seeds_differ(subset) -> None:
    x, labels = (t[:1000] for t in subset)
    runs = train_many(x, labels, [0, 1], epochs=1, device="cpu", engine="vmap")
    a, b = (torch.cat([p.detach().flatten() for p in run.net.parameters()]) for run in runs)
    assert not torch.equal(a, b), "two seeds trained to the same weights: the seeds are not used"


def test_on_epoch_sees_every_seed_after_every_epoch(subset) -> None:
    x, labels = (t[:300] for t in subset)
    for engine in ("vmap", "bmm", "sequential"):
        seen: list[tuple[int, int]] = []
        train_many(x, labels, [4, 2], epochs=2, device="cpu", engine=engine,
                   on_epoch=lambda seed, epoch, result, seen=seen: seen.append((seed, epoch)))  # fmt: skip
        assert sorted(seen) == [(2, 1), (2, 2), (4, 1), (4, 2)], f"{engine}: on_epoch saw {seen}"


def test_a_diverging_seed_is_named(subset) -> None:
    wild = dataclasses.replace(RECIPES["default"], lr=100.0)
    with pytest.raises(TrainingDivergedError, match=r"seed \d+: loss became \S+ at epoch 1, minibatch \d+"):
        train_many(*subset, [0, 1], recipe=wild, epochs=3, device="cpu", engine="vmap")


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-3", [0, 1, 2, 3]), ("7", [7]), ("0,3, 5-6", [0, 3, 5, 6]), ("10-10", [10])],
)
def test_seed_lists(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds, f"{text!r} parsed as {parse_seeds(text)}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a seed"),
        ("3-1", "runs backwards"),
        ("a", "is not a seed"),
        ("-1", "is not a seed"),
        ("1,1", "appears twice"),
        (f"0-{MAX_SEEDS}", f"more than {MAX_SEEDS} seeds"),
        ("4294967296", r"over 2\*\*32-1"),
    ],
)
def test_bad_seed_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_seeds(text)


def test_the_summary_counts_the_printed_figure() -> None:
    summary = Summary.of([93.0, 94.41, 95.0, 92.0], epochs=3)
    assert (summary.min, summary.median, summary.max) == (92.0, 93.705, 95.0), summary
    assert summary.printed == 94.41, "3 epochs: the printed figure is Q31's 94.41%"
    assert summary.at_or_above_printed == 0.5, "94.41 and 95.0 are at or above 94.41: half of 4"
    assert "50% at or above the printed 94.41%" in summary.line(), summary.line()
    assert Summary.of([98.0], epochs=5).printed is None, "no figure was printed for 5 epochs"
