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
VERSION="4.32.5"
TARGET="$REPO_ROOT/.tools/schemathesis"
MARKER="$TARGET/.installed-$VERSION"

die() {
    printf 'schemathesis: error: %s\n' "$*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $0 <base url> [st run options]"
base_url="${1%/}"
shift
command -v python3 >/dev/null 2>&1 || die "python3 (with pip) is needed"
if [ ! -f "$MARKER" ]; then
    printf 'schemathesis: installing schemathesis==%s into .tools/schemathesis (once)\n' \
        "$VERSION" >&2
    mkdir -p "$REPO_ROOT/.tools"
    staging="$(mktemp -d "$REPO_ROOT/.tools/schemathesis.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    python3 -m pip install --quiet --no-input --disable-pip-version-check \
        --only-binary=:all: --target "$staging" "schemathesis==$VERSION" \
        || die "pip install schemathesis==$VERSION failed"
    touch "$staging/.installed-$VERSION"
    rm -rf "$TARGET"
    mv "$staging" "$TARGET"
    trap - EXIT
fi
# No cache of earlier runs' examples: each run stands alone.
export HYPOTHESIS_STORAGE_DIRECTORY="${TMPDIR:-/tmp}/schemathesis-hypothesis-$$"
trap 'rm -rf "$HYPOTHESIS_STORAGE_DIRECTORY"' EXIT
PYTHONPATH="$TARGET" python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())' \
    --config-file "$SCRIPT_DIR/schemathesis.toml" run "$base_url/openapi.json" \
    --max-examples "${ST_MAX_EXAMPLES:-10}" --seed "${ST_SEED:-1}" --no-color "$@"
