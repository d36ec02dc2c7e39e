#!/usr/bin/env bash
# Runs scripts/openai-smoke.py with the official `openai` Python package (from PyPI, installed
# once under .tools/openai-python), against a running platform:
#
#   scripts/openai-smoke.sh --base-url http://127.0.0.1:8000/api/v1/openai --key ap_... \
#       --model <avatar slug> --question "..." --expect "<text the answer must quote>" \
#       --embedding-model <the deployment's embedder>
#
# The integration test `openai::the_official_python_sdk_streams_a_grounded_answer` starts an
# app and runs it, so `make test` (and CI) does too.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
OPENAI_VERSION="3.60.0"
TARGET="$REPO_ROOT/.tools/openai-python"
MARKER="$TARGET/.installed-$OPENAI_VERSION"

die() {
    printf 'openai-smoke: error: %s\n' "$*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || die "python3 (with pip) is needed"
if [ ! -f "$MARKER" ]; then
    printf 'openai-smoke: installing openai==%s into .tools/openai-python (once)\n' \
        "$OPENAI_VERSION" >&2
    mkdir -p "$REPO_ROOT/.tools"
    staging="$(mktemp -d "$REPO_ROOT/.tools/openai-python.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    python3 -m pip install --quiet --no-input --disable-pip-version-check \
        --only-binary=:all: --target "$staging" "openai==$OPENAI_VERSION" \
        || die "pip install openai==$OPENAI_VERSION failed"
    touch "$staging/.installed-$OPENAI_VERSION"
    rm -rf "$TARGET"
    mv "$staging" "$TARGET"
    trap - EXIT
fi
PYTHONPATH="$TARGET" exec python3 "$SCRIPT_DIR/openai-smoke.py" "$@"
