"""Which backward pass of the fast CPU step, at how many threads, trains fastest on this machine: timed on
the run's own first minibatches.

oneDNN's kernels differ by ISA and core count, so a step tuned on one CPU can lose on another
(docs/benchmarks.md has the figures per CPU). A `Tuner` hands out the (backward, threads) `Choice` each of
a run's first steps runs with, and takes their times:

- stage 1 times each backward pass (fast_cpu.BACKWARDS) at the most threads;
- stage 2 times the winner at each thread count (fast_cpu.thread_counts);

Up to ROUNDS rounds a stage, the candidates interleaved in each, STEPS timed steps a candidate and round,
after one untimed step where a candidate is new (its kernels' and its threads' first use); a candidate
PRUNE times slower than another of its stage is dropped at once. A candidate's time is its best round's mean:
a noisy host slows a round, never speeds one up. The probe's steps are real steps of the run, which every
candidate computes alike to float rounding, so the probe costs only the slower candidates' extra time on
the few steps they take (`probe_extra_ms` in the run's record).

The schedule and the pick are kept for the process (`tuner`): a later run of the same shape replays the
schedule step for step, untimed, and then trains with the same pick, so two runs with one seed give the same
bits. A run fixes its engine, backward pass and threads to skip the probe (and to be reproduced in another
process).
"""

from __future__ import annotations

import os
import platform
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

ROUNDS = 2  # rounds a stage, the candidates interleaved in each
STEPS = 3  # timed steps a candidate and round
PRUNE = 1.3  # a candidate this many times slower than a round's fastest is not timed in the next


@dataclass(frozen=True)
class Choice:
    backward: str
    threads: int

    def __str__(self) -> str:
        return f"{self.backward} at {self.threads} thread{'s' * (self.threads > 1)}"


# A candidate, the stage and the round its step is timed in; round -1: a new candidate's first step, which
# counts in what the probe cost but not in the candidate's time.
Timing = tuple[Choice, int, int]


@dataclass
class Tuner:
    """The choices of a run's steps while it probes, then its pick; `replay` one made before, untimed."""

    backwards: tuple[str, ...]
    counts: tuple[int, ...]  # thread counts, the most first
    schedule: list[Choice] = field(default_factory=list)  # what each probe step ran with, in order
    times: dict[Timing, list[float]] = field(default_factory=dict)
    pick: Choice | None = None
    replayed: bool = False
    stage: int = 0
    round: int = 0
    candidates: list[Choice] = field(default_factory=list)  # the stage's, still timed
    _queue: deque[tuple[Choice, Timing | None]] = field(default_factory=deque)

    def next(self) -> tuple[Choice, Timing | None]:
        """The choice the next step runs with, and what to record its time under (None: untimed)."""
        while not self._queue and self.pick is None:
            self._advance()
        if self._queue:
            choice, timing = self._queue.popleft()
            self.schedule.append(choice)
            return choice, timing
        return self.pick, None

    def record(self, timing: Timing, seconds: float) -> None:
        """A step's time; a candidate PRUNE times slower than another of its stage is not timed further."""
        self.times.setdefault(timing, []).append(seconds)
        choice, stage, r = timing
        others = [self.seconds(c, stage) for c in self.candidates if c != choice]
        if r >= 0 and seconds > PRUNE * min(others, default=float("inf")):
            self._queue = deque(entry for entry in self._queue if entry[0] != choice)
            self.candidates.remove(choice)

    def seconds(self, choice: Choice, stage: int | None = None) -> float:
        """A candidate's seconds a step, in `stage` or in any: its best round's mean."""
        rounds = [sum(times) / len(times) for (c, s, r), times in self.times.items()
                  if c == choice and r >= 0 and stage in (None, s)]  # fmt: skip
        return min(rounds, default=float("inf"))

    def best_so_far(self) -> Choice:
        """The pick, or the fastest candidate timed yet (a run shorter than the probe), or the first."""
        if self.pick is not None:
            return self.pick
        timed = {c for c, _, r in self.times if r >= 0}
        return min(timed, key=self.seconds) if timed else Choice(self.backwards[0], self.counts[0])

    def describe(self) -> dict[str, Any]:
        """What it picked, and how: the run's JSON records it. `probe_extra_ms` is what the probe's steps took
        beyond as many steps at the pick's pace, the run's first step (the process's set-up) left out: what
        probing cost the run."""
        best = self.best_so_far()
        timed = sorted({c for c, _, r in self.times if r >= 0},
                       key=lambda c: (self.backwards.index(c.backward), -c.threads))  # fmt: skip
        spent = [t for times in self.times.values() for t in times][1:]  # the run's first step: any run pays it
        return {
            "backward": best.backward,
            "threads": best.threads,
            "probe_steps": len(self.schedule),
            "probe_finished": self.pick is not None,
            "probe_replayed": self.replayed,
            "probe_ms_per_step": {str(c): round(1e3 * self.seconds(c), 3) for c in timed},
            "probe_extra_ms": round(1e3 * (sum(spent) - len(spent) * self.seconds(best)), 1) if timed else 0.0,
        }

    def replay(self) -> Tuner:
        """A tuner for a later run: this one's schedule, untimed, then its pick."""
        queue = deque((choice, None) for choice in self.schedule)
        return Tuner(self.backwards, self.counts, times=dict(self.times), pick=self.pick, replayed=True, _queue=queue)

    def _advance(self) -> None:
        """The stage's next round, the candidates slower than PRUNE x the fastest left out; else the next stage:
        1, the backward passes at the most threads; 2, the fastest pass's thread counts; then the pick."""
        if self.candidates and self.round + 1 < ROUNDS:
            fastest = min(self.seconds(c, self.stage) for c in self.candidates)
            self.candidates = [c for c in self.candidates if self.seconds(c, self.stage) <= PRUNE * fastest]
            if len(self.candidates) > 1:
                self.round += 1
                self._plan()
                return
        self.stage, self.round, self.candidates = self.stage + 1, 0, []
        if self.stage == 1 and len(self.backwards) > 1:
            self.candidates = [Choice(b, self.counts[0]) for b in self.backwards]
        elif self.stage == 2 and len(self.counts) > 1:
            self.candidates = [Choice(self._fastest_backward(), count) for count in self.counts]
        elif self.stage > 2:
            picks = [Choice(self._fastest_backward(), count) for count in self.counts]
            self.pick = min(picks, key=lambda c: (self.seconds(c, 2), -c.threads))
        self._plan()

    def _fastest_backward(self) -> str:
        return min(self.backwards, key=lambda b: self.seconds(Choice(b, self.counts[0]), 1))

    def _plan(self) -> None:
        """A round of the stage's candidates, interleaved; in the first, an untimed step where one is new."""
        ran = set(self.schedule)
        for candidate in self.candidates:
            if self.round == 0 and candidate not in ran:
                self._queue.append((candidate, (candidate, self.stage, -1)))
            self._queue.extend([(candidate, (candidate, self.stage, self.round))] * STEPS)


_tuned: dict[tuple[Any, ...], Tuner] = {}  # the process's finished probes, by the run's shape


def tuner(backwards: Sequence[str], counts: Sequence[int], shape: tuple[Any, ...]) -> Tuner:
    """A new probe, or a replay of the one a run of the same shape finished in this process. The passes are
    timed in the order likeliest to win on this ISA (likely_first), which changes what the probe costs, not
    what it picks."""
    ordered = likely_first(backwards)
    done = _tuned.get((ordered, tuple(counts), shape))
    return done.replay() if done is not None else Tuner(ordered, tuple(counts))


def likely_first(backwards: Sequence[str]) -> tuple[str, ...]:
    """The backward passes, the one that won on this ISA's CPUs so far first (docs/benchmarks.md): a slower
    candidate timed after a faster one is dropped after one step."""
    order = ("phases", "dilated") if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else ("dilated",)
    return tuple(sorted(backwards, key=lambda b: order.index(b) if b in order else len(order)))


def keep(made: Tuner, shape: tuple[Any, ...]) -> None:
    """Keep a finished probe for later runs of the same shape."""
    if made.pick is not None and not made.replayed:
        _tuned.setdefault((made.backwards, made.counts, shape), made)


def cpu() -> dict[str, Any]:
    """The CPU the run trained on: its model, the ISA torch's kernels use, its cores."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return {"model": model, "isa": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}
