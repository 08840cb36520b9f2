#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: Python's venv and bubblewrap
# from the system's packages, then torch @TORCH@ (CPU) and mnist-lab with the spec's pinned tools into
# a virtual environment beside it. Made by `python -m spec.gradescope build`; docs/gradescope.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if command -v apt-get >/dev/null 2>&1 && ! { command -v bwrap && python3 -c "import ensurepip"; } >/dev/null 2>&1; then
    { apt-get update -qq && apt-get install -y -qq bubblewrap python3-venv; } >/dev/null 2>&1 \
        || echo "setup.sh: bubblewrap could not be installed: graded code will run as a plain process"
fi
python3 -m venv "$HERE/.venv"
"$HERE/.venv/bin/python" -m pip install -q torch==@TORCH@ @TORCH_INDEX@
"$HERE/.venv/bin/python" -m pip install -q -r "$HERE/requirements.txt" "$HERE/@WHEEL@"
"$HERE/.venv/bin/python" -c "import torch, mnist_lab; print('setup.sh: torch', torch.__version__, 'and mnist_lab ready')"
