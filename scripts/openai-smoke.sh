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
. "$SCRIPT_DIR/pypi-tool.sh"
pypi_tool_install openai-smoke openai 3.60.0 openai-python
PYTHONPATH="$REPO_ROOT/.tools/openai-python" exec python3 "$SCRIPT_DIR/openai-smoke.py" "$@"
