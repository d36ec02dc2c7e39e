#!/usr/bin/env bash
# Property-based fuzzing of the HTTP API with schemathesis (from PyPI, installed once under
# .tools/schemathesis), against a running platform: every operation of /openapi.json, every
# phase (examples, coverage, fuzzing, stateful), a bounded number of examples each. Fails on a
# 5xx, a response that does not match its documented schema, status or content type, or
# invalid data accepted.
#
#   ST_TOKEN=<owner's access token> ST_API_KEY=ap_... ST_PID=<project id> ST_AID=<avatar id> \
#   ST_DID=<document id> ST_CID=<conversation id> ST_EID=<end user id> \
#       scripts/schemathesis.sh http://127.0.0.1:8000 [more `st run` options]
#
# ST_MAX_EXAMPLES (default 10) bounds each operation's examples; ST_SEED (default 1) fixes
# the generator. The integration test `api_fuzzing::` creates a tenancy and runs it, so
# `make test` (and CI) does too.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
. "$SCRIPT_DIR/pypi-tool.sh"

if [ $# -lt 1 ]; then
    printf 'usage: %s <base url> [st run options]\n' "$0" >&2
    exit 2
fi
base_url="${1%/}"
shift
pypi_tool_install schemathesis schemathesis 4.32.5 schemathesis
# No cache of earlier runs' examples: each run stands alone.
export HYPOTHESIS_STORAGE_DIRECTORY="${TMPDIR:-/tmp}/schemathesis-hypothesis-$$"
trap 'rm -rf "$HYPOTHESIS_STORAGE_DIRECTORY"' EXIT
PYTHONPATH="$REPO_ROOT/.tools/schemathesis" python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())' \
    --config-file "$SCRIPT_DIR/schemathesis.toml" run "$base_url/openapi.json" \
    --max-examples "${ST_MAX_EXAMPLES:-10}" --seed "${ST_SEED:-1}" --no-color "$@"
