"""train() on the CPU against the plain printed loop, by thread count (.ci/gpu, step g; any CPU host):

    python .ci/cpu_threads.py OUT_JSON [COUNTS]        # COUNTS: default,8,4,2 unless given

Each count runs in a fresh process: torch's threads set to it ("default": left as torch sets them, a
thread a core), a warm-up of the plain loop on 10,000 images, then one epoch of the printed recipe by
the plain loop (`backprop_deep`) and one by train(), twice, alternating; the best of each. At a count,
train() trains with that many threads (threads=N); at "default" it picks its own thread count and
backward pass by timing its first steps (mnist_lab/tuning.py), and the second run replays that pick.
Prints a table and writes every time and train()'s engine to OUT_JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import contextlib, io, json, sys, time
import numpy as np, torch
from mnist_lab import RECIPES, TrainOptions, backprop_deep, load_tensors, train
from mnist_lab.tuning import cpu
count = sys.argv[1]
if count != "default":
    torch.set_num_threads(int(count))
x, labels = load_tensors("training")
recipe = RECIPES["assignment"]

def plain(images=len(x)):
    torch.manual_seed(0)
    np.random.seed(0)
    net = recipe.make_net()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        backprop_deep(x[:images], labels[:images], net, T=1, B=recipe.batch_size, gamma=recipe.lr, rho=recipe.momentum)
    return time.perf_counter() - start

def fast():
    threads = None if count == "default" else int(count)
    result = train(x, labels, recipe, TrainOptions(epochs=1, device="cpu", threads=threads), log=None)
    return result.epoch_seconds[0], result.engine

out = {"count": count, "torch_threads": torch.get_num_threads(), "cpu": cpu(), "warm_up_seconds": plain(10_000),
       "plain": [], "train": [], "engines": []}
for _ in range(2):
    out["plain"].append(plain())
    seconds, engine = fast()
    out["train"].append(seconds)
    out["engines"].append(engine)
print("RESULT " + json.dumps(out))
"""


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "cpu-threads.json")
    counts = (sys.argv[2] if len(sys.argv) > 2 else "default,8,4,2").split(",")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    rows, failures = [], 0
    for count in counts:
        command = [sys.executable, "-c", CHILD, count]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            failures += 1
            rows.append({"count": count, "error": (proc.stderr or proc.stdout).strip()[-2000:]})
            print(f"{count}: failed\n{rows[-1]['error']}", flush=True)
            continue
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
        out.write_text(json.dumps(rows, indent=1))
        row = rows[-1]
        picked = row["engines"][-1]
        print(f"{count:>8} threads ({row['torch_threads']}): plain {min(row['plain']):.2f} s, train() "
              f"{min(row['train']):.2f} s, {min(row['plain']) / min(row['train']):.2f}x; train() ran "
              f"{picked.get('backward')} with {picked.get('threads')} threads", flush=True)  # fmt: skip
    out.write_text(json.dumps(rows, indent=1))
    done = [r for r in rows if "error" not in r]
    if done:
        print(f"\nCPU: {done[0]['cpu']}")
        print("| threads | printed loop (best of 2) | train() (best of 2) | ratio | train() ran |")
        print("|---|---|---|---|---|")
        for r in done:
            e = r["engines"][-1]
            ran = f"{e.get('engine')}, {e.get('backward')}, {e.get('threads')} threads"
            label = f"{r['count']} ({r['torch_threads']})" if r["count"] == "default" else r["count"]
            print(f"| {label} | {min(r['plain']):.2f} s | {min(r['train']):.2f} s | "
                  f"{min(r['plain']) / min(r['train']):.2f}x | {ran} |")  # fmt: skip
        best = min(done, key=lambda r: min(r["train"]))
        fastest_plain = min(done, key=lambda r: min(r["plain"]))
        print(f"best train(): {min(best['train']):.2f} s at {best['count']}; best plain loop: "
              f"{min(fastest_plain['plain']):.2f} s at {fastest_plain['count']}; best against best: "
              f"{min(fastest_plain['plain']) / min(best['train']):.2f}x")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
