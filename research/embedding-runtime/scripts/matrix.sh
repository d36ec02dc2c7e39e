#!/usr/bin/env bash
# Runs the measurement matrix; each run through measure.sh (quiet-machine protocol + numpy ref op).
set -uo pipefail
cd "$(dirname "$0")/.."
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/lib/libonnxruntime.so.1.32.0}
B=${BIN:-target/release/bench}
TAG=${TAG:-}
for rep in ${REPS:-1 2}; do
  for t in 1 2; do
    scripts/measure.sh "ort-t$t-opt3$TAG-r$rep" -- $B --backend ort --threads $t --opt 3 --chunks 64
    scripts/measure.sh "tract-t$t$TAG-r$rep" -- $B --backend tract --threads $t --chunks 32
    scripts/measure.sh "candle-t$t$TAG-r$rep" -- $B --backend candle --threads $t --chunks 16
  done
  scripts/measure.sh "ort-t2-opt1$TAG-r$rep" -- $B --backend ort --threads 2 --opt 1 --chunks 64
  scripts/measure.sh "ort-t2-opt0$TAG-r$rep" -- $B --backend ort --threads 2 --opt 0 --chunks 64
done
