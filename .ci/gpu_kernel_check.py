"""check("Q32") in a real Jupyter kernel (.ci/gpu, step d): python .ci/gpu_kernel_check.py OUT_JSON [QUESTION]

As spec/meta_tests/test_check.py runs it: a new kernel (nbclient, ipykernel's python3) started in a
student's folder with the course's MNISTtools, the printed solution's definitions run cell by cell,
then `check("Q32")`, whose tests train on each device the kernel has (cpu, and cuda where it is
available). Writes the verdicts, the table check() showed and the seconds to OUT_JSON; exits 0 when
Q32 passed with its cuda test among those run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spec.meta_tests.broken.mistakes import SOLUTION  # noqa: E402
from spec.meta_tests.test_check import MNISTTOOLS, _text, definitions  # noqa: E402

REPORT = "\n".join([
    "import json, torch",
    "print(json.dumps({'cuda_available': torch.cuda.is_available(),",
    "                  'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,",
    "                  'passed': result.passed, 'error': result.error, 'seconds': result.seconds,",
    "                  'verdicts': [v.to_json() for v in result.verdicts]}))",
])  # fmt: skip


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "kernel-check.json")
    question = sys.argv[2] if len(sys.argv) > 2 else "Q32"
    folder = Path(tempfile.mkdtemp(prefix="mnist-lab-kernel-check-"))
    (folder / "MNISTtools.py").write_text(MNISTTOOLS)
    sources = [*definitions(SOLUTION), "from spec.check import check", f"result = check({question!r})\nresult", REPORT]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MNIST_LAB_IMPL"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    client.execute(env=env)
    wall = time.perf_counter() - start
    shown = _text(notebook.cells[-2].outputs)
    report = json.loads(_text(notebook.cells[-1].outputs).strip().splitlines()[-1])
    report.update(wall_seconds=wall, shown=shown)
    out.write_text(json.dumps(report, indent=1))
    asked = [v for v in report["verdicts"] if v["question"] == question]
    print(f"check({question!r}) in a kernel, {wall:.1f} s (kernel start and definitions included); CUDA in the kernel: "
          f"{report['cuda_available']} ({report['device']})")  # fmt: skip
    for v in report["verdicts"]:
        print(f"  {v['question']}: {v['outcome']} {v['tests']} {v['message'][:300]}")
    if report["error"]:
        print(f"  error: {report['error']}")
    ok = bool(report["passed"] and asked and asked[0]["outcome"] == "passed")
    if question == "Q32":  # the GPU question: its cuda test ran and passed, beside its cpu one
        ok = ok and report["cuda_available"] and asked[0]["tests"].get("passed", 0) >= 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
