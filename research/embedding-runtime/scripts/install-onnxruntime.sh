#!/usr/bin/env bash
# Puts libonnxruntime.so.<ver> from the PyPI `onnxruntime` CPU wheel into $1 (default ./lib) for `ort`
# with feature load-dynamic; point ORT_DYLIB_PATH at the printed file. No other download.
set -euo pipefail
VER="${ORT_VERSION:-1.32.0}"
DEST="${1:-$(dirname "$0")/../lib}"
WHEELS="${WHEELS_DIR:-$(dirname "$0")/../wheels}"
mkdir -p "$DEST" "$WHEELS"
if [ ! -f "$DEST/libonnxruntime.so.$VER" ]; then
  python3 -m pip download "onnxruntime==$VER" --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 -d "$WHEELS" -q
  WHL=$(ls "$WHEELS"/onnxruntime-"$VER"-*.whl | head -1)
  python3 - "$WHL" "$DEST" "$VER" <<'PY'
import sys, zipfile, shutil, os
whl, dest, ver = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    n = next(n for n in z.namelist() if n.endswith(f"onnxruntime/capi/libonnxruntime.so.{ver}"))
    with z.open(n) as s, open(os.path.join(dest, os.path.basename(n)), "wb") as d:
        shutil.copyfileobj(s, d)
PY
fi
ls -la "$DEST/libonnxruntime.so.$VER"
echo "export ORT_DYLIB_PATH=$(realpath "$DEST/libonnxruntime.so.$VER")"
