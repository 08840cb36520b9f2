"""The GPU runner's speed experiments (.ci/gpu, step f): python .ci/gpu_speed.py OUT_DIR

Each section is timed on CUDA and written to OUT_DIR/speed.json as soon as it ends (a section that fails
records its error and the next one runs); OUT_DIR/profile.txt gets torch.profiler's tables. Sections:

- graphs: one epoch of the printed recipe by train(), its steps replayed from CUDA graphs, against the
  same run with no graph (eager steps): both times, and how far apart the weights end (to rounding, or
  bitwise; also over 40 minibatches, where the tests compare runs: rounding has not yet parted them there);
  then 10 epochs, and 10 with cuDNN's benchmark mode (its fastest algorithms, timed);
- bmm_single: one seed through the sweep's "bmm" engine (mnist_lab/batched.py) for 10 epochs, and
  its first epoch's weights against train()'s (cuDNN's TF32 off for both);
- profile: kernels per step and kernel time per step, top kernels by CUDA time: train()'s step eager
  and replayed, 32 seeds' vmapped step and bmm step eager, and each population's replay timed with events;
- compiled: train()'s step with the forward and loss compiled by torch.compile (inductor), captured in
  the same graphs: set-up (the compile) and training time for 1 and 10 epochs, weights against the eager
  run's. An experiment: no engine of the package compiles.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType

from mnist_lab import RECIPES, TrainOptions, evaluate, load_tensors, train
from mnist_lab.engines import AutogradSteps
from mnist_lab.sweep import _Population, train_many

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-out")
OUT.mkdir(parents=True, exist_ok=True)
CUDA = torch.device(os.environ.get("GPU_SPEED_DEVICE", "cuda"))
IMAGES = int(os.environ.get("GPU_SPEED_IMAGES", "60000"))
SEEDS = int(os.environ.get("GPU_SPEED_SEEDS", "32"))
SECTIONS = os.environ.get("GPU_SPEED_SECTIONS", "graphs,bmm_single,profile,compiled").split(",")
PRINTED = RECIPES["assignment"]
results: dict[str, Any] = {"torch": torch.__version__}
profile_lines: list[str] = []


def save() -> None:
    (OUT / "speed.json").write_text(json.dumps(results, indent=1, default=str))
    (OUT / "profile.txt").write_text("\n".join(profile_lines) + "\n")


def section(name: str) -> Callable[[Callable[[], dict[str, Any]]], None]:
    def run(body: Callable[[], dict[str, Any]]) -> None:
        if name not in SECTIONS:
            return
        start = time.perf_counter()
        print(f"--- {name}", flush=True)
        try:
            results[name] = body()
        except Exception as err:  # an experiment's failure is its result; the next one runs
            results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
            sync()
        results[name]["section_seconds"] = round(time.perf_counter() - start, 2)
        print(json.dumps({k: v for k, v in results[name].items() if k != "traceback"}, default=str)[:1500], flush=True)
        save()

    return run


def sync() -> None:
    if CUDA.type == "cuda":
        torch.cuda.synchronize()


def flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().double() for p in net.parameters()])


def apart(a: torch.nn.Module, b: torch.nn.Module) -> dict[str, Any]:
    x, y = flat(a), flat(b)
    return {
        "bitwise_equal": bool(torch.equal(x, y)),
        "max_abs_diff": float((x - y).abs().max()),
        "max_rel_diff": float((x - y).abs().max() / y.abs().max()),
    }


@contextlib.contextmanager
def no_graphs() -> Iterator[None]:
    """Steps built inside run eagerly: no capture."""
    with (
        mock.patch.object(AutogradSteps, "capture", return_value=None),
        mock.patch.object(_Population, "capture", return_value=None),
    ):
        yield


FORTY = 40 * 100 - 50  # images: 40 minibatches, the last half full, as spec/package_tests/test_training.py compares


def timed_train(epochs: int, images: int | None = None, **kwargs: Any) -> tuple[Any, float]:
    """train() of the printed recipe on CUDA (on the first `images`); (result, wall seconds including set-up)."""
    x, labels = (X, LABELS) if images is None else (X[:images], LABELS[:images])
    sync()
    start = time.perf_counter()
    result = train(x, labels, PRINTED, TrainOptions(epochs=epochs, device=CUDA, **kwargs), log=None)
    sync()
    return result, time.perf_counter() - start


X, LABELS = (t[:IMAGES].to(CUDA) for t in load_tensors("training"))
XTEST, LTEST = (t.to(CUDA) for t in load_tensors("testing"))
results["device"] = torch.cuda.get_device_name(0) if CUDA.type == "cuda" else "cpu"
train(X[:2000], LABELS[:2000], PRINTED, TrainOptions(epochs=1, device=CUDA), log=None)  # CUDA, cuDNN and cuBLAS warm
with no_graphs():
    train(X[:2000], LABELS[:2000], PRINTED, TrainOptions(epochs=1, device=CUDA), log=None)


@section("graphs")
def _graphs() -> dict[str, Any]:
    graphed, graphed_wall = timed_train(1)
    with no_graphs():
        eager, eager_wall = timed_train(1)
        eager40, _ = timed_train(1, FORTY)
    graphed40, _ = timed_train(1, FORTY)
    ten, ten_wall = timed_train(10)
    with torch.backends.cudnn.flags(enabled=True, benchmark=True):  # cuDNN times its algorithms once per shape
        tuned, tuned_wall = timed_train(10)
    return {
        "graphed_epoch_seconds": graphed.seconds, "graphed_wall_seconds": graphed_wall,
        "eager_epoch_seconds": eager.seconds, "eager_wall_seconds": eager_wall,
        "speedup_of_graphs": eager.seconds / graphed.seconds,
        "graphed_against_eager": apart(graphed.net, eager.net),
        "graphed_against_eager_forty_steps": apart(graphed40.net, eager40.net),
        "engine_graphed": graphed.engine, "engine_eager": eager.engine,
        "ten_epochs_train_seconds": ten.seconds, "ten_epochs_wall_seconds": ten_wall,
        "ten_epochs_test_accuracy": evaluate(ten.net, XTEST, LTEST),
        "ten_epochs_cudnn_benchmark_train_seconds": tuned.seconds,
        "ten_epochs_cudnn_benchmark_wall_seconds": tuned_wall,
    }  # fmt: skip


@section("bmm_single")
def _bmm_single() -> dict[str, Any]:
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want, _ = timed_train(1, engine="autograd")
        got = train_many(X, LABELS, [0], recipe=PRINTED, epochs=1, device=CUDA, engine="bmm")[0]
        want40, _ = timed_train(1, FORTY, engine="autograd")
        got40 = train_many(X[:FORTY], LABELS[:FORTY], [0], recipe=PRINTED, epochs=1, device=CUDA, engine="bmm")[0]
    sync()
    start = time.perf_counter()
    ten = train_many(X, LABELS, [0], recipe=PRINTED, epochs=10, device=CUDA, engine="bmm")[0]
    sync()
    return {
        "one_epoch_against_train_tf32_off": apart(got.net, want.net),
        "forty_steps_against_train_tf32_off": apart(got40.net, want40.net),
        "ten_epochs_train_seconds": ten.seconds, "ten_epochs_wall_seconds": time.perf_counter() - start,
        "ten_epochs_test_accuracy": evaluate(ten.net, XTEST, LTEST), "engine": ten.engine,
    }  # fmt: skip


def kernels(prof: torch.profiler.profile, steps: int, title: str, top: int = 15) -> dict[str, Any]:
    """Kernel (and memcpy/memset) launches and CUDA time per step from a profile of `steps` steps; the top
    kernels into profile.txt."""
    rows = []
    for event in prof.key_averages():
        if event.device_type != DeviceType.CUDA:
            continue
        us = getattr(event, "self_device_time_total", None)
        us = us if us is not None else getattr(event, "self_cuda_time_total", 0.0)
        rows.append((us, event.count, event.key))
    rows.sort(reverse=True)
    total_us, launches = sum(r[0] for r in rows), sum(r[1] for r in rows)
    profile_lines.append(f"== {title}: {steps} steps; {launches / steps:.1f} launches and "
                         f"{total_us / steps:.1f} us of CUDA time a step")  # fmt: skip
    profile_lines.append(f"{'us/step':>10} {'calls/step':>10}  kernel")
    for us, count, key in rows[:top]:
        profile_lines.append(f"{us / steps:10.1f} {count / steps:10.2f}  {key[:150]}")
    profile_lines.append("")
    return {"launches_per_step": launches / steps, "cuda_us_per_step": total_us / steps, "kinds": len(rows)}


def profiled(run: Callable[[], None], steps: int, title: str) -> dict[str, Any]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if CUDA.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sync()
    with torch.profiler.profile(activities=activities) as prof:
        run()
        sync()
    return kernels(prof, steps, title)


def event_ms(run: Callable[[], None], repeats: int = 3) -> float:
    """The median of `repeats` runs' CUDA-event milliseconds (the host's clock on the CPU)."""
    times = []
    for _ in range(repeats):
        if CUDA.type != "cuda":
            start_s = time.perf_counter()
            run()
            times.append(1000 * (time.perf_counter() - start_s))
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def single_steps(graphs: bool) -> AutogradSteps:
    torch.manual_seed(0)
    steps = AutogradSteps(PRINTED.make_net().to(CUDA), X, LABELS, PRINTED, total=6000)
    steps.new_epoch(torch.randperm(len(X), device=CUDA))
    if graphs and CUDA.type == "cuda":
        steps.capture()
    return steps


def population(engine: str, graphs: bool, seeds: int = SEEDS) -> _Population:
    with contextlib.nullcontext() if graphs else no_graphs():
        steps = _Population(X, LABELS, list(range(seeds)), PRINTED, 10, CUDA, engine)
    steps.new_epoch(torch.stack([torch.randperm(len(X), device=CUDA) for _ in range(seeds)]))
    return steps


@section("profile")
def _profile() -> dict[str, Any]:
    out: dict[str, Any] = {}
    eager = single_steps(graphs=False)
    eager.run(0, 50)  # warm
    out["single_eager"] = profiled(lambda: eager.run(100, 200), 100, "train()'s step, eager (autograd, 1 run)")
    out["single_eager"]["ms_per_step_events"] = event_ms(lambda: eager.run(200, 300)) / 100
    replayed = single_steps(graphs=True)
    replayed.run(0, 100)
    out["single_graphed"] = profiled(lambda: replayed.run(100, 200), 100, "train()'s step, replayed from a graph")
    out["single_graphed"]["ms_per_step_events"] = event_ms(lambda: replayed.run(200, 300)) / 100
    for engine in ("vmap", "bmm"):
        try:
            steps = population(engine, graphs=False)
            steps.run(0, 5)
            title = f"{SEEDS} seeds' {engine} step, eager"
            out[f"{engine}_32_eager"] = profiled(lambda s=steps: s.run(5, 15), 10, title)
            out[f"{engine}_32_eager"]["ms_per_step_events"] = event_ms(lambda s=steps: s.run(15, 25)) / 10
            del steps
            steps = population(engine, graphs=True)
            steps.run(0, 100)
            out[f"{engine}_32_graphed_ms_per_step"] = event_ms(lambda s=steps: s.run(100, 200)) / 100
            out[f"{engine}_32_engine"] = steps.describe()
            del steps
        except Exception as err:
            out[f"{engine}_32_error"] = f"{type(err).__name__}: {err}"
        if CUDA.type == "cuda":
            torch.cuda.empty_cache()
        save()
    return out


class CompiledSteps(AutogradSteps):
    """train()'s autograd steps, the net's forward and the loss compiled by inductor (its backward too, by
    AOTAutograd), captured in the same graphs."""

    def __init__(self, net: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(net, *args, **kwargs)
        self.loss_of = torch.compile(lambda x, labels: F.cross_entropy(net(x), labels), dynamic=False)

    def _step(self, idx: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        loss = self.loss_of(self.x.index_select(0, idx), self.labels.index_select(0, idx))
        self._update(torch.autograd.grad(loss, self.params), rate)
        return loss.detach()


@section("compiled")
def _compiled() -> dict[str, Any]:
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want, _ = timed_train(1, engine="autograd")
        want40, _ = timed_train(1, FORTY, engine="autograd")
        with mock.patch("mnist_lab.engines.AutogradSteps", CompiledSteps):
            one, one_wall = timed_train(1, engine="autograd")
            got40, _ = timed_train(1, FORTY, engine="autograd")
    with mock.patch("mnist_lab.engines.AutogradSteps", CompiledSteps):
        ten, ten_wall = timed_train(10, engine="autograd")
    return {
        "one_epoch_train_seconds": one.seconds, "one_epoch_setup_seconds": one_wall - one.seconds,
        "one_epoch_against_autograd_tf32_off": apart(one.net, want.net), "engine": one.engine,
        "forty_steps_against_autograd_tf32_off": apart(got40.net, want40.net),
        "ten_epochs_train_seconds": ten.seconds, "ten_epochs_setup_seconds": ten_wall - ten.seconds,
        "ten_epochs_test_accuracy": evaluate(ten.net, XTEST, LTEST),
    }  # fmt: skip


print("speed.json and profile.txt written to", OUT)
