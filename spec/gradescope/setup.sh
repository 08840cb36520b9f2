#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: a Python in the supported range
# (the image's python3 where it is one, else a newer one: on PATH, from apt, or from uv), bubblewrap from the
# system's packages, then torch @TORCH@ (CPU) and mnist-lab with the spec's pinned tools into a virtual
# environment beside it. Made by `python -m spec.gradescope build`; docs/gradescope.md.
#   bash setup.sh                 all of it
#   bash setup.sh --python-only   find (or install) the Python, say which in one line, and stop
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHONS="@PYTHONS@"  # the supported Pythons, newest first
NEWEST="${PYTHONS%% *}" OLDEST="${PYTHONS##* }"

version_of() {  # "3.12.3", or nothing where $1 is no Python that runs
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true
}
supported() {  # is version $1 (3.12.3) one of PYTHONS?
    local minor="${1%.*}"
    [ -n "$1" ] && [[ " $PYTHONS " == *" $minor "* ]]
}

# The image's python3 where it is in range; else python3.X on PATH, newest first; else the distribution's
# python3.X from apt; else Python 3.12 from uv. SAID: what was tried, for the one line that says what was used.
IMAGE="$(command -v python3 || true)"
IMAGE_VERSION="$( [ -n "$IMAGE" ] && version_of "$IMAGE" || true)"
if [ -z "$IMAGE" ]; then
    SAID="the image has no python3"
elif [ -z "$IMAGE_VERSION" ]; then
    SAID="the image's python3 ($IMAGE) does not run"
else
    SAID="the image's python3 is $IMAGE_VERSION"
fi
PYTHON="" UPDATED=""
if supported "$IMAGE_VERSION"; then
    PYTHON="$IMAGE" SAID="the image's python3, in the supported range $OLDEST-$NEWEST"
fi
if [ -z "$PYTHON" ]; then
    for minor in $PYTHONS; do
        found="$(command -v "python$minor" || true)"
        if [ -n "$found" ] && supported "$(version_of "$found")"; then
            PYTHON="$found"
            break
        fi
    done
    [ -n "$PYTHON" ] || SAID="$SAID, no python$NEWEST..python$OLDEST is on PATH"
fi
if [ -z "$PYTHON" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 && UPDATED=1
        for minor in $PYTHONS; do
            if apt-get install -y -qq "python$minor" "python$minor-venv" >/dev/null 2>&1; then
                found="$(command -v "python$minor" || true)"
                if [ -n "$found" ] && supported "$(version_of "$found")"; then
                    PYTHON="$found" SAID="$SAID: apt-get installed python$minor"
                    break
                fi
            fi
        done
        [ -n "$PYTHON" ] || SAID="$SAID, apt-get has none of them"
    else
        SAID="$SAID, there is no apt-get"
    fi
fi
if [ -z "$PYTHON" ]; then  # uv's Python in the source folder, which the sandboxed worker can read
    UV="$(command -v uv || true)" WHOSE="$(command -v uv || true)"
    if [ -z "$UV" ] && [ -n "$IMAGE_VERSION" ]; then  # uv itself, for this run only
        TOOLS="$(mktemp -d)"
        trap 'rm -rf "$TOOLS"' EXIT
        "$IMAGE" -m pip install -q --disable-pip-version-check --target "$TOOLS" uv >/dev/null 2>&1 || true
        [ ! -x "$TOOLS/bin/uv" ] || UV="$TOOLS/bin/uv" WHOSE="installed by pip"
    fi
    if [ -n "$UV" ]; then
        export UV_PYTHON_INSTALL_DIR="$HERE/.python" UV_PYTHON_PREFERENCE=only-managed
        found=""
        if "$UV" python install 3.12 >/dev/null 2>&1; then
            found="$("$UV" python find 3.12 2>/dev/null || true)"
        fi
        if [ -n "$found" ] && supported "$(version_of "$found")"; then
            PYTHON="$found" SAID="$SAID: uv ($WHOSE) installed Python 3.12"
        else
            SAID="$SAID, and uv ($WHOSE) could not install Python 3.12"
        fi
    else
        SAID="$SAID, and there is no uv (the image's python3 could not pip-install it)"
    fi
fi
if [ -z "$PYTHON" ]; then
    echo "setup.sh: error: no Python $OLDEST-$NEWEST to grade with: $SAID" >&2
    exit 1
fi
VERSION="$(version_of "$PYTHON")"
echo "setup.sh: Python $VERSION ($PYTHON); $SAID"
[ "${1:-}" != "--python-only" ] || exit 0

MINOR="${VERSION%.*}"
if command -v apt-get >/dev/null 2>&1; then  # the sandbox, and venv where this Python lacks it
    if ! command -v bwrap >/dev/null 2>&1; then
        { [ -n "$UPDATED" ] || apt-get update -qq; } >/dev/null 2>&1 && UPDATED=1
        apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
            || echo "setup.sh: bubblewrap could not be installed: graded code will run as a plain process"
    fi
    if ! "$PYTHON" -c "import ensurepip" >/dev/null 2>&1; then
        { [ -n "$UPDATED" ] || apt-get update -qq; } >/dev/null 2>&1 && UPDATED=1
        apt-get install -y -qq "python$MINOR-venv" >/dev/null 2>&1 \
            || echo "setup.sh: python$MINOR-venv could not be installed: $PYTHON -m venv may fail"
    fi
fi
"$PYTHON" -m venv "$HERE/.venv"
"$HERE/.venv/bin/python" -m pip install -q torch==@TORCH@ @TORCH_INDEX@
"$HERE/.venv/bin/python" -m pip install -q -r "$HERE/requirements.txt" "$HERE/@WHEEL@"
"$HERE/.venv/bin/python" -c "import torch, mnist_lab; print('setup.sh: torch', torch.__version__, 'and mnist_lab ready')"
