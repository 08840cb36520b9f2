"""mnist_lab's training, beyond the questions: the package's promise (its default recipe reaches 94%
after 3 epochs and 98% after 10, on the CPU and on CUDA), device choice and evaluation, divergence
stops the run, CPU runs repeat exactly, and the fast path computes what the printed loop computes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mnist_lab
from mnist_lab import (
    RECIPES,
    InputError,
    TrainingDivergedError,
    TrainOptions,
    TrainResult,
    backprop_deep,
    choose_device,
    engines,
    evaluate,
    fast_cpu,
    train,
    tuning,
)
from mnist_lab.engines import AutogradSteps
from mnist_lab.fast_cpu import FastLeNetStep, _pool_backward, _pool_forward
from spec.harness.cells import accuracy
from spec.harness.measure import Measure
from spec.package_tests.support import StopTraining, assert_same_weights

# The package's default recipe over seeds 0-3 on the CPU (docs/results.md): 98.53-98.82% after 3 epochs,
# 98.82-99.04% after 10. One seed each, with margin: the promise is 94% and 98%.
PROMISE = {3: 94.0, 10: 98.0}
SEED = 0


@pytest.fixture(scope="module")
def default_training(mnist):
    """`run(device, epochs)`: RECIPES["default"] trained by train(), the test accuracy after each epoch;
    memoised, so the tests share one run per device and length."""
    xtrain, ltrain = mnist["training"]
    xtest, ltest = mnist["testing"]
    runs: dict[tuple[str, int], tuple[mnist_lab.TrainResult, list[float]]] = {}

    def run(device: torch.device, epochs: int) -> tuple[mnist_lab.TrainResult, list[float]]:
        if (device.type, epochs) not in runs:
            accuracies: list[float] = []
            result = train(
                xtrain, ltrain, options=TrainOptions(epochs=epochs, seed=SEED, device=device), log=None,
                on_epoch=lambda epoch, progress: accuracies.append(evaluate(progress.net, xtest, ltest)),
            )  # fmt: skip
            runs[device.type, epochs] = result, accuracies
        return runs[device.type, epochs]

    return run


@pytest.mark.training
@pytest.mark.xdist_group("default-recipe")
@pytest.mark.parametrize("epochs", sorted(PROMISE))
def test_default_recipe_keeps_the_packages_promise(
    default_training, device: torch.device, epochs: int, measure: Measure
) -> None:
    result, accuracies = default_training(device, epochs)
    measure.series("loss", device, recipe="default", epochs=epochs, points=result.loss_log)
    measure.series("accuracy", device, recipe="default", epochs=epochs, points=list(enumerate(accuracies, 1)))
    assert len(accuracies) == epochs, f"{len(accuracies)} epochs evaluated, not {epochs}"
    assert accuracies[-1] >= PROMISE[epochs], (
        f"seed {SEED} on {device.type}: {accuracies[-1]:.2f}% after {epochs} epochs, promised {PROMISE[epochs]}%"
    )
    devices = {p.device.type for p in result.net.parameters()}
    assert devices == {device.type}, f"the trained net's parameters are on {devices}, not {device.type}"
    losses = [loss for _, _, loss in result.loss_log]
    assert len(losses) == 6 * epochs, f"{len(losses)} logged losses, not 6 an epoch"
    assert sum(losses[-6:]) < sum(losses[:6]) / 3, f"the loss does not fall: {losses[:6]} ... {losses[-6:]}"


@pytest.mark.cuda
@pytest.mark.training
def test_gpu_accuracy_matches_cpu(default_training) -> None:
    """The GPU gives no better accuracy per epoch than the CPU (Q33): its kernels round differently,
    so the runs part ways, but not by more than half a point."""
    gpu = default_training(torch.device("cuda"), 10)[1][-1]
    cpu = default_training(torch.device("cpu"), 10)[1][-1]
    assert abs(gpu - cpu) <= 0.5, f"seed {SEED}: GPU {gpu:.2f}% against CPU {cpu:.2f}% after 10 epochs"


def test_choose_device() -> None:
    """'auto' is cell [21]'s line: CUDA where there is one, else the CPU; 'cpu' is taken as asked."""
    auto = choose_device("auto")
    assert isinstance(auto, torch.device), f"choose_device('auto') returned {type(auto).__name__}"
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu"), f"choose_device('auto') is {auto}"
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda")


def test_evaluate_is_the_printed_accuracy(device: torch.device, mnist) -> None:
    """evaluate(net, x, labels) is cell [40]'s `100 * (ltest == lpred).float().mean()`, in batches."""
    xtest, ltest = mnist["testing"]
    net = mnist_lab.LeNet().to(device)
    expected = accuracy(net, xtest, ltest, device)
    for batch_size in (10_000, 999):
        got = evaluate(net, xtest, ltest, batch_size=batch_size)
        assert got == pytest.approx(expected, abs=1e-3), f"evaluate gives {got}%, the printed cell {expected}%"


@pytest.fixture(scope="module")
def subset(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """20,000 real training images: 200 minibatches, two printed losses an epoch."""
    x, labels = mnist["training"]
    return x[:20_000], labels[:20_000]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_diverging_loss_stops_training_naming_epoch_and_minibatch(subset, seed: int) -> None:
    """--lr 100: the loss blows up (to NaN, or to 1e32 and a net stuck on one class)."""
    x, labels = subset
    wild = dataclasses.replace(RECIPES["default"], lr=100.0)
    with pytest.raises(TrainingDivergedError, match=r"loss became \S+ at epoch 1, minibatch \d+: training diverged"):
        train(x, labels, wild, TrainOptions(epochs=8, seed=seed, device="cpu"), log=None)


def test_a_large_but_sane_loss_is_not_divergence() -> None:
    from mnist_lab.train import DIVERGED_LOSS, _check_loss

    _check_loss(2.303, 1, 1)
    _check_loss(DIVERGED_LOSS, 1, 1)
    with pytest.raises(TrainingDivergedError, match="loss became 1001 at epoch 2, minibatch 7"):
        _check_loss(1001.0, 2, 7)


def poisoned(subset, at: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The subset with image `at` made NaN: the loss of whichever minibatch holds it is NaN."""
    x, labels = subset
    x = x.clone()
    x[at] = float("nan")
    return x, labels


def test_the_fast_path_names_the_minibatch_that_went_nan(subset) -> None:
    x, labels = poisoned(subset, at=1234)
    order = np.random.RandomState(0).permutation(len(x))
    minibatch = int(np.flatnonzero(order == 1234)[0]) // 100 + 1
    with pytest.raises(TrainingDivergedError, match=rf"loss became nan at epoch 1, minibatch {minibatch}:"):
        train(x, labels, options=TrainOptions(epochs=2, device="cpu"), rng=np.random.RandomState(0), log=None)


def test_the_printed_loop_names_the_minibatch_that_went_nan(subset, capsys: pytest.CaptureFixture[str]) -> None:
    x, labels = poisoned(subset, at=1234)
    np.random.seed(0)
    minibatch = int(np.flatnonzero(np.random.permutation(len(x)) == 1234)[0]) // 100 + 1
    np.random.seed(0)
    with pytest.raises(TrainingDivergedError, match=rf"loss became nan at epoch 1, minibatch {minibatch}:"):
        backprop_deep(x, labels, mnist_lab.LeNet(), T=2)
    capsys.readouterr()


def test_same_seed_same_cpu_run(subset) -> None:
    x, labels = subset
    runs = [train(x, labels, options=TrainOptions(epochs=1, seed=3, device="cpu"), log=None) for _ in range(2)]
    assert runs[0].loss_log == runs[1].loss_log, f"losses differ run to run: {runs[0].loss_log} {runs[1].loss_log}"
    for (name, a), b in zip(runs[0].net.state_dict().items(), runs[1].net.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} differs between two CPU runs with the same seed"


def test_different_seeds_differ(subset) -> None:
    x, labels = subset
    a, b = (train(x, labels, options=TrainOptions(epochs=1, seed=s, device="cpu"), log=None) for s in (0, 1))
    assert a.loss_log != b.loss_log, "seeds 0 and 1 gave the same losses: the seed is not used"


# Both paths agree to float rounding, but SGD amplifies rounding: once a ReLU input or a
# pooling tie sits within rounding of its threshold, the two runs take different branches
# and part, and the larger the learning rate, the sooner. So the comparisons run many
# steps at the printed learning rate (0.001) and few at the default's 0.05 (docs/differences.md).
STEPS = {"assignment": 40, "default": 2}
B = 100  # both recipes' minibatch size
# Every way a data set can end: no full minibatch (1, B - 1), only full ones (B), one image
# over (B + 1), a half minibatch after one or two full ones (1.5 B, 2.5 B).
SIZES = [1, B - 1, B, B + 1, 3 * B // 2, 5 * B // 2]


def assert_trains_as_the_printed_loop(
    x: torch.Tensor, labels: torch.Tensor, recipe: str, engine: str, epochs: int, device: torch.device
) -> None:
    """Same start, same permutations, same settings (the printed loop has no schedule and no
    warm-up, so the learning rate is held constant): train() and backprop_deep end with the
    same weights."""
    chosen = dataclasses.replace(RECIPES[recipe], schedule="constant", warmup=0)
    assert chosen.batch_size == B, f"recipe {recipe} has minibatches of {chosen.batch_size}, this test's B is {B}"
    x, labels = x.to(device), labels.to(device)
    torch.manual_seed(0)
    start = chosen.make_net().to(device)
    plain, fast = copy.deepcopy(start), copy.deepcopy(start)
    np.random.seed(7)
    with contextlib.redirect_stdout(io.StringIO()):
        backprop_deep(x, labels, plain, T=epochs, B=B, gamma=chosen.lr, rho=chosen.momentum)
    options = TrainOptions(epochs=epochs, device=device, engine=engine)
    result = train(x, labels, chosen, options, net=fast, rng=np.random.RandomState(7), log=None)
    assert_same_weights(result.net, plain, f"{len(x)} images, {epochs} epochs, against backprop_deep")


@pytest.mark.parametrize("engine", ["auto", "autograd"])
@pytest.mark.parametrize("recipe", ["assignment", "default"])
def test_fast_path_trains_the_weights_the_printed_loop_trains(
    subset, device: torch.device, recipe: str, engine: str
) -> None:
    """STEPS minibatches, the last half full. On the CPU, "auto" is the fast CPU step and
    "autograd" the step CUDA captures in a graph."""
    x, labels = (t[: STEPS[recipe] * B - B // 2] for t in subset)
    assert_trains_as_the_printed_loop(x, labels, recipe, engine, 1, device)


@pytest.mark.parametrize("engine", ["auto", "autograd"])
@pytest.mark.parametrize("recipe", ["assignment", "default"])
@pytest.mark.parametrize("n", SIZES)
def test_every_data_set_size_trains_as_the_printed_loop(
    subset, device: torch.device, n: int, recipe: str, engine: str
) -> None:
    """Two epochs of n images, whatever n leaves for the last minibatch: on CUDA a graph replays
    the full ones, and neither its capture nor its warm-up may read past the data or leave a trace."""
    x, labels = (t[:n] for t in subset)
    assert_trains_as_the_printed_loop(x, labels, recipe, engine, 2, device)


@pytest.mark.training
@pytest.mark.parametrize("engine", ["auto", "autograd"])
@pytest.mark.parametrize("recipe", ["assignment", "default"])
def test_an_epoch_of_all_of_mnist_runs_every_minibatch(mnist, device: torch.device, recipe: str, engine: str) -> None:
    x, labels = mnist["training"]
    result = train(x, labels, RECIPES[recipe], TrainOptions(epochs=1, device=device, engine=engine), log=None)
    assert [row[:2] for row in result.loss_log] == [[1, k] for k in range(100, 601, 100)], (
        f"printed losses at {[row[:2] for row in result.loss_log]}, not at minibatches 100, 200, ..., 600 of epoch 1"
    )
    losses = [row[2] for row in result.loss_log]
    assert losses[-1] < losses[0], f"{recipe} on {device.type}: the loss does not fall over an epoch: {losses}"


@pytest.mark.cuda
@pytest.mark.parametrize("n", [B, 5 * B // 2])
def test_capturing_the_cuda_graph_leaves_no_trace(subset, n: int) -> None:
    """The warm-up before a capture trains for real; afterwards weights, momentum, counters,
    losses and the CUDA generator must be as they were."""
    x, labels = (t[:n].to("cuda") for t in subset)
    recipe = RECIPES["default"]
    steps = AutogradSteps(recipe.make_net().cuda(), x, labels, recipe, total=10)
    steps.new_epoch(torch.randperm(n, device="cuda"))
    before, rng = [s.detach().clone() for s in steps._state()], torch.cuda.get_rng_state()
    steps.capture()
    assert steps.graphs, f"no graph captured for {n} images"
    for i, (after, was) in enumerate(zip(steps._state(), before, strict=True)):
        torch.testing.assert_close(after, was, rtol=0, atol=0, msg=lambda m, i=i: f"state {i} changed: {m}")
    assert torch.equal(torch.cuda.get_rng_state(), rng), "the capture moved the CUDA generator"


@pytest.mark.cuda
def test_a_failed_capture_leaves_the_run_eager_and_untouched(subset, monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture that raises (as cuBLASLt once did mid-capture on the GPU runner) keeps no graph, puts the state
    and the current stream back, and the run trains eagerly, as the printed loop does, saying why."""
    x, labels = (t[: 5 * B // 2].to("cuda") for t in subset)
    recipe = RECIPES["default"]
    steps = AutogradSteps(recipe.make_net().cuda(), x, labels, recipe, total=10)
    steps.new_epoch(torch.randperm(len(x), device="cuda"))
    before, stream = [s.detach().clone() for s in steps._state()], torch.cuda.current_stream()

    def failing(self: AutogradSteps, span: int, pool: tuple[int, int]) -> torch.cuda.CUDAGraph:
        raise RuntimeError("CUBLAS_STATUS_INTERNAL_ERROR (as planted by the test)\nmore lines")

    monkeypatch.setattr(AutogradSteps, "_record", failing)
    steps.capture()
    assert not steps.graphs, f"graphs kept after a failed capture: {sorted(steps.graphs)}"
    assert steps.describe()["cuda_graph_error"] == "RuntimeError: CUBLAS_STATUS_INTERNAL_ERROR (as planted by the test)"
    assert torch.cuda.current_stream() == stream, "the failed capture left another stream current"
    for i, (after, was) in enumerate(zip(steps._state(), before, strict=True)):
        torch.testing.assert_close(after, was, rtol=0, atol=0, msg=lambda m, i=i: f"state {i} changed: {m}")
    assert_trains_as_the_printed_loop(*(t[: 5 * B // 2] for t in subset), "assignment", "autograd", 2, steps.x.device)


BAD_DATA = {
    "no images": (lambda x, labels: (x[:0], labels[:0]), "no images to train on"),
    "fewer labels": (lambda x, labels: (x, labels[:-1]), r"labels must be \(N,\) = \(150,\)"),
    "int32 labels": (lambda x, labels: (x, labels.int()), "labels must be int64"),
    "label 10": (lambda x, labels: (x, torch.cat([labels[:-1], torch.tensor([10])])), "labels must be 0-9: found 10"),
    "label -1": (lambda x, labels: (x, torch.cat([torch.tensor([-1]), labels[1:]])), "labels must be 0-9: found -1"),
    "flat images": (lambda x, labels: (x.view(len(x), 784), labels), r"images must be \(N, 1, 28, 28\)"),
    "uint8 images": (lambda x, labels: (x.byte(), labels), "images must be floating point"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_train_refuses_data_before_any_work(subset, device: torch.device, case: str) -> None:
    """Checked on the host: on CUDA a bad label or size would be a device-side assert instead."""
    change, message = BAD_DATA[case]
    x, labels = change(*(t[:150] for t in subset))
    with pytest.raises(InputError, match=message):
        train(x.to(device), labels.to(device), options=TrainOptions(epochs=1, device=device), log=None)


def test_train_refuses_a_run_of_no_epochs(subset) -> None:
    with pytest.raises(InputError, match="epochs must be a whole number >= 1, not 0"):
        train(*subset, options=TrainOptions(epochs=0, device="cpu"), log=None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("init", "kaiming", "init must be one of"),
        ("schedule", "cosine", "schedule must be one of"),
        ("lr", 0.0, "lr must be positive"),
        ("lr", float("nan"), "lr must be positive"),
        ("momentum", 1.0, r"momentum must be in \[0, 1\)"),
        ("batch_size", 0, "batch_size must be a whole number >= 1"),
        ("batch_size", 2.5, "batch_size must be a whole number >= 1"),
        ("warmup", -1, "warmup must be a whole number of steps >= 0"),
        ("warmup", 1.5, "warmup must be a whole number of steps >= 0"),
    ],
)
def test_a_recipe_refuses_unknown_settings(field: str, value: object, message: str) -> None:
    """A misspelt init or schedule would otherwise train with another one, silently."""
    with pytest.raises(InputError, match=message):
        dataclasses.replace(RECIPES["default"], **{field: value})


def test_this_torch_has_the_overloads_the_fast_cpu_step_calls() -> None:
    """Every torch the project is tested on must run the fast path, or the figures in docs/benchmarks.md are not its."""
    missing = fast_cpu.missing_overloads()
    assert not missing, f"torch {torch.__version__} lacks or renamed {missing}: train() falls back to autograd"


def test_without_those_overloads_train_falls_back_to_autograd(subset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_cpu, "supported", lambda: False)
    net = RECIPES["assignment"].make_net()
    with pytest.raises(InputError, match="aten overloads"):
        FastLeNetStep(net, lr=0.001, momentum=0.9)
    x, labels = (t[:200] for t in subset)
    train(x, labels, RECIPES["assignment"], TrainOptions(epochs=1, device="cpu"), net=net, log=None)
    storages = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert len(storages) == len(list(net.parameters())), "the fast CPU step ran (its one flat buffer is there)"


@pytest.mark.parametrize("backward", fast_cpu.BACKWARDS)
@pytest.mark.parametrize("recipe", ["assignment", "default"])
def test_fast_cpu_step_gives_autograds_losses_and_weights(subset, recipe: str, backward: str) -> None:
    """Each backward pass the tuner may pick trains as torch.optim.SGD over autograd does, to float rounding."""
    x, labels = subset
    chosen = RECIPES[recipe]
    torch.manual_seed(0)
    plain = chosen.make_net()
    fast = copy.deepcopy(plain)
    optimizer = torch.optim.SGD(plain.parameters(), lr=chosen.lr, momentum=chosen.momentum)
    step = FastLeNetStep(fast, lr=chosen.lr, momentum=chosen.momentum, backward=backward)
    order = torch.from_numpy(np.random.RandomState(0).permutation(len(x)))
    expected, got = [], []
    for k in range(STEPS[recipe]):
        idx = order[k * 100 : (k + 1) * 100]
        optimizer.zero_grad()
        loss = F.cross_entropy(plain(x[idx]), labels[idx])
        loss.backward()
        optimizer.step()
        expected.append(loss.item())
        got.append(step(x[idx], labels[idx]).item())
    torch.testing.assert_close(
        torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-6,
        msg=lambda m: f"FastLeNetStep({backward!r})'s losses differ from autograd's: {m}",
    )  # fmt: skip
    assert_same_weights(fast, plain, f"FastLeNetStep({backward!r}) against autograd's SGD")


def test_fast_cpu_step_trains_the_nets_own_parameters_in_one_buffer(subset) -> None:
    """The step keeps the net's Parameter objects and values, but lays them in one flat buffer:
    each is a view of it, and a step changes the net itself."""
    x, labels = subset
    net = RECIPES["assignment"].make_net()
    before = {name: (p, p.detach().clone()) for name, p in net.named_parameters()}
    step = FastLeNetStep(net, lr=0.001, momentum=0.9)
    buffer = step.flat.untyped_storage().data_ptr()
    for name, p in net.named_parameters():
        param, value = before[name]
        assert p is param, f"{name} is a new Parameter object; optimisers holding the old one would be lost"
        assert p.untyped_storage().data_ptr() == buffer, f"{name} is not a view of the step's flat buffer"
        torch.testing.assert_close(p.detach(), value, rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")
    step(x[:100], labels[:100])
    moved = [name for name, p in net.named_parameters() if not torch.equal(p.detach(), before[name][1])]
    assert len(moved) == len(before), f"a step left some of the net's parameters unchanged: only {moved} moved"


def test_fast_cpu_pooling_breaks_ties_like_max_pool2d() -> None:
    """MNIST's flat background ties often: the gradient must go where max_pool2d sends it."""
    values = torch.tensor([[1.0, 1.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    for window in values:
        x = window.view(1, 1, 2, 2).requires_grad_()
        F.max_pool2d(x, 2).sum().backward()
        phases = window.reshape(4, 1)  # phase 2u + v = window[u, v]
        pooled, wins = _pool_forward(phases)
        grad = _pool_backward(torch.ones(1), wins, torch.empty(4, 1))
        assert pooled.item() == window.max().item(), f"pooled {pooled.item()} for window {window.tolist()}"
        assert grad.view(2, 2).tolist() == x.grad.view(2, 2).tolist(), (
            f"window {window.tolist()}: gradient {grad.view(2, 2).tolist()}, max_pool2d's {x.grad.view(2, 2).tolist()}"
        )


def test_linear_schedule_decays_from_lr_to_zero() -> None:
    recipe = dataclasses.replace(RECIPES["default"], lr=0.05, schedule="linear", warmup=0)
    rates = [recipe.lr_at(t, 10) for t in range(10)]
    assert rates == pytest.approx([0.05 * (1 - t / 10) for t in range(10)]), f"linear schedule gives {rates}"
    assert float(recipe.lr_at(torch.tensor(5.0), 10)) == pytest.approx(0.025), "a tensor step gives another rate"
    constant = dataclasses.replace(recipe, schedule="constant")
    assert [constant.lr_at(t, 10) for t in (0, 9)] == [0.05, 0.05], "a constant schedule changes the rate"


def test_warmup_ramps_the_rate_up_to_the_schedule() -> None:
    recipe = dataclasses.replace(RECIPES["default"], lr=0.05, schedule="linear", warmup=4)
    want = [0.05 * min(1, (t + 1) / 4) * (1 - t / 10) for t in range(10)]
    rates = [recipe.lr_at(t, 10) for t in range(10)]
    assert rates == pytest.approx(want), f"a 4-step warm-up into the linear schedule gives {rates}, not {want}"
    tensor_rates = recipe.lr_at(torch.arange(10, dtype=torch.float64), 10)
    torch.testing.assert_close(tensor_rates, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


# Seeds on which the default recipe without its warm-up (0.05 from the first step) left every
# network dead within 100 minibatches of a 3-epoch run: 11.35% test accuracy, the loss at ln 10.
DEAD_WITHOUT_WARMUP = [6, 16, 18]


@pytest.mark.parametrize("seed", DEAD_WITHOUT_WARMUP)
def test_the_default_recipe_learns_from_the_first_minibatches(mnist, seed: int) -> None:
    """The first 100 minibatches of a 3-epoch run of all of MNIST bring the loss well below
    ln 10 = 2.30, on the seeds that stayed there (and never left) without the warm-up."""
    x, labels = mnist["training"]
    first: list[float] = []

    def stop(epoch: int, minibatch: int, result: TrainResult) -> None:
        first.append(result.loss_log[-1][2])
        raise StopTraining  # after the first printed loss

    with contextlib.suppress(StopTraining):
        train(x, labels, options=TrainOptions(epochs=3, seed=seed, device="cpu"), log=None, on_log=stop)
    assert first, f"seed {seed}: no loss printed after 100 minibatches"
    assert first[0] < 1.5, f"seed {seed}: mean loss {first[0]:.3f} over the first 100 minibatches, not below 1.5"


def test_both_engines_follow_the_schedule_alike(subset) -> None:
    """The fast CPU step and the graph-ready step agree under the default (linear) schedule:
    over 2 minibatches the rate goes 0.05, then 0.025."""
    x, labels = (t[: STEPS["default"] * 100] for t in subset)
    runs = {
        engine: train(x, labels, options=TrainOptions(epochs=1, seed=5, device="cpu", engine=engine), log=None)
        for engine in ("fast_cpu", "autograd")
    }
    assert_same_weights(runs["fast_cpu"].net, runs["autograd"].net, "fast_cpu against autograd, linear schedule")


def test_an_unknown_engine_is_refused(subset) -> None:
    with pytest.raises(ValueError, match="engine must be one of"):
        train(*subset, options=TrainOptions(epochs=1, device="cpu", engine="turbo"), log=None)


@pytest.mark.parametrize(("most", "counts"), [(1, [1]), (2, [2, 1]), (6, [6, 3, 1]), (16, [16, 8, 4, 2, 1])])
def test_thread_counts_halve_down_to_one(most: int, counts: list[int]) -> None:
    assert fast_cpu.thread_counts(most) == counts, f"under {most} threads: {fast_cpu.thread_counts(most)}"


class FakeClock:
    """The clock FastCPUSteps times its steps by, moved on by each step as its backward pass says: a fake slow
    engine whose timings no other process can disturb, so the verdict does not depend on the machine's load."""

    def __init__(self, slow: set[str]) -> None:
        self.slow, self.now, self.call = slow, 0.0, FastLeNetStep.__call__

    def perf_counter(self) -> float:
        return self.now

    def step(self, step: FastLeNetStep, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.now += 0.010 if step.backward in self.slow else 0.003
        return self.call(step, x, labels)


@pytest.fixture
def fresh_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """No probe kept from an earlier test: each run here probes anew."""
    monkeypatch.setattr(tuning, "_tuned", {})


@pytest.mark.usefixtures("fresh_probes")
@pytest.mark.parametrize("slow", [{"phases"}, {"phases", "dilated"}, {"dilated", "autograd"}])
def test_a_slow_backward_pass_is_not_picked(subset, monkeypatch: pytest.MonkeyPatch, slow: set[str]) -> None:
    """The probe times every backward pass on the run's first steps, and picks none that is slower."""
    clock = FakeClock(slow)
    monkeypatch.setattr(engines, "time", clock)
    monkeypatch.setattr(FastLeNetStep, "__call__", lambda step, x, labels: clock.step(step, x, labels))
    x, labels = (t[:6000] for t in subset)  # 60 steps: the probe's 34 and more
    with fast_cpu.num_threads(2):
        result = train(x, labels, options=TrainOptions(epochs=1, device="cpu"), log=None)
    engine = result.engine
    assert engine["probe_finished"], f"the probe did not finish in 60 steps: {engine}"
    assert engine["backward"] not in slow, f"picked the slow {engine['backward']}: {engine['probe_ms_per_step']}"
    timed = {key.split(" at ")[0] for key in engine["probe_ms_per_step"]}
    assert timed == set(fast_cpu.BACKWARDS), f"the probe timed {sorted(timed)}, not every backward pass"
    assert engine["probe_ms_per_step"][f"{engine['backward']} at 2 threads"] == 3.0, engine


@pytest.mark.usefixtures("fresh_probes")
def test_a_later_run_replays_the_probe_and_gives_the_same_bits(subset) -> None:
    """The probe's steps are real steps, and which pass runs each depends on timing: a later run of the same
    shape in the process replays the first's choices step for step, so one seed gives one set of weights."""
    x, labels = (t[:6000] for t in subset)
    options = TrainOptions(epochs=1, seed=4, device="cpu")
    first, again = (train(x, labels, options=options, log=None) for _ in range(2))
    assert not first.engine["probe_replayed"], f"the first run found a probe to replay: {first.engine}"
    assert again.engine["probe_replayed"], f"the second run probed anew: {again.engine}"
    assert again.engine["backward"] == first.engine["backward"], f"{first.engine} then {again.engine}"
    for (name, a), b in zip(again.net.state_dict().items(), first.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} differs between a replayed run and the run that probed"


def probe(tuner: tuning.Tuner, ms: dict[tuning.Choice, float]) -> tuning.Tuner:
    """Run the probe to its pick, each step taking `ms` of its choice."""
    while tuner.pick is None:
        choice, timing = tuner.next()
        if timing is not None:
            tuner.record(timing, ms[choice] / 1e3)
    return tuner


def test_the_tuner_times_the_passes_then_the_winners_thread_counts_interleaved() -> None:
    phases, dilated, one = tuning.Choice("phases", 2), tuning.Choice("dilated", 2), tuning.Choice("phases", 1)
    tuner = probe(tuning.Tuner(("phases", "dilated"), (2, 1)), {phases: 3.0, dilated: 3.3, one: 3.6})
    steps = [str(c) for c in tuner.schedule]
    first_round = [phases] * 4 + [dilated] * 4  # each new candidate's first step, untimed, then 3 timed
    assert tuner.schedule[:14] == [*first_round, *[phases] * 3, *[dilated] * 3], f"stage 1 ran {steps[:14]}"
    assert tuner.schedule[14:] == [phases] * 3 + [one] * 4 + [phases] * 3 + [one] * 3, f"stage 2 ran {steps[14:]}"
    assert tuner.pick == phases, f"picked {tuner.pick}"
    replay = tuner.replay()
    replayed = [replay.next()[0] for _ in range(len(tuner.schedule) + 2)]
    assert replayed == [*tuner.schedule, phases, phases], "the replay is not the schedule, then the pick"


def test_the_tuner_drops_a_candidate_far_slower_than_another() -> None:
    """PRUNE x slower than another of its stage: timed first, it runs one round; timed after, one step."""
    phases, dilated, one = tuning.Choice("phases", 2), tuning.Choice("dilated", 2), tuning.Choice("dilated", 1)
    tuner = probe(tuning.Tuner(("phases", "dilated"), (2, 1)), {phases: 8.0, dilated: 3.0, one: 5.0})
    assert tuner.schedule.count(phases) == 4, f"phases, 2.7x slower, ran {tuner.schedule.count(phases)} steps, not 4"
    assert tuner.schedule.count(one) == 2, f"1 thread, 1.7x slower, ran {tuner.schedule.count(one)} steps, not 2"
    assert tuner.pick == dilated, f"picked {tuner.pick}"
    extra = tuner.describe()["probe_extra_ms"]  # the run's first step is left out: any run pays it
    assert extra == pytest.approx(3 * 5.0 + 2 * 2.0), f"the probe's cost beyond the pick's pace: {extra} ms"


def test_train_trains_at_the_picked_thread_count_and_puts_the_callers_back(
    subset, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, labels = (t[:300] for t in subset)
    picks_one = lambda backwards, counts, shape: tuning.Tuner(("phases",), (1,))  # noqa: E731
    monkeypatch.setattr(tuning, "tuner", picks_one)
    during: list[int] = []
    with fast_cpu.num_threads(2):
        result = train(x, labels, options=TrainOptions(epochs=1, device="cpu"), log=None,
                       on_epoch=lambda e, r: during.append(torch.get_num_threads()))  # fmt: skip
        after = torch.get_num_threads()
    assert during == [1], f"trained at {during} threads, not the picked 1"
    assert result.engine["threads"] == 1, f"the run records {result.engine}, not 1 thread"
    assert after == 2, f"train() left {after} threads, not the caller's 2"


@pytest.mark.usefixtures("fresh_probes")
@pytest.mark.parametrize("engine", ["fast_cpu", "autograd"])
def test_train_trains_at_the_thread_count_asked_for(subset, engine: str) -> None:
    x, labels = (t[:300] for t in subset)
    during: list[int] = []
    with fast_cpu.num_threads(2):
        result = train(x, labels, options=TrainOptions(epochs=1, device="cpu", engine=engine, threads=1), log=None,
                       on_epoch=lambda e, r: during.append(torch.get_num_threads()))  # fmt: skip
    assert during == [1], f"{engine}: trained at {during} threads, not the 1 asked for"
    assert result.engine["threads"] == 1, f"{engine}: the run records {result.engine}"
    assert result.engine["engine"] == engine, f"asked for {engine}, ran {result.engine}"


def test_a_fixed_backward_pass_is_not_probed(subset) -> None:
    x, labels = (t[:3000] for t in subset)
    one_epoch = TrainOptions(epochs=1, device="cpu")
    fixed = dataclasses.replace(one_epoch, engine="fast_cpu", backward="dilated", threads=1)
    result = train(x, labels, options=fixed, log=None)
    assert result.engine["backward"] == "dilated", f"asked for dilated, ran {result.engine}"
    assert result.engine["probe_steps"] == 0, f"probed though told the pass and threads: {result.engine}"
    with pytest.raises(InputError, match="backward 'dilated' is fast_cpu's"):
        train(x, labels, options=dataclasses.replace(one_epoch, engine="autograd", backward="dilated"), log=None)
    with pytest.raises(InputError, match="backward must be one of"):
        train(x, labels, options=dataclasses.replace(one_epoch, backward="fastest"), log=None)


@pytest.mark.parametrize("threads", [0, -2, 1.5, True])
def test_train_refuses_a_thread_count_that_is_not_one_or_more(subset, threads: object) -> None:
    with pytest.raises(InputError, match="threads must be a whole number >= 1"):
        train(*subset, options=TrainOptions(epochs=1, device="cpu", threads=threads), log=None)


@pytest.mark.parametrize(
    ("n", "graph_steps", "spans"),
    [
        (60_000, 100, {100}),
        (60_000, 10, {10}),
        (12_000, 100, {100, 20}),  # the second window holds 20 full minibatches
        (12_550, 10, {10, 5}),  # 125 full: the second window's last replay takes 5
        (250, 100, {2}),
        (99, 100, set()),  # no full minibatch, no graph
    ],
)
def test_graphs_cover_every_run_of_full_minibatches(n: int, graph_steps: int, spans: set[int]) -> None:
    """run() replays the full minibatches of each window of LOG_EVERY, graph_steps at a time; capture()
    makes a graph for each length that occurs, and nothing else."""
    x, labels = torch.zeros(n, 1, 28, 28), torch.zeros(n, dtype=torch.long)
    recipe = RECIPES["assignment"]
    steps = AutogradSteps(recipe.make_net(), x, labels, recipe, total=10, graph_steps=graph_steps)
    assert steps.spans() == spans, f"{n} images, graphs of {graph_steps}: spans {steps.spans()}, not {spans}"
