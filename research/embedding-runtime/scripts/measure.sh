#!/usr/bin/env bash
# measure.sh LABEL -- command...   : waits for /tmp/cpu-measure-main to vanish, holds /tmp/cpu-measure-helper,
# prints the numpy reference ops/s right before the run, the load average, and appends a JSON line to results.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
LABEL="$1"; shift; [ "$1" = "--" ] && shift
while [ -e /tmp/cpu-measure-main ]; do sleep 5; done
touch /tmp/cpu-measure-helper; trap 'rm -f /tmp/cpu-measure-helper' EXIT
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
REF=$(OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=py python3 scripts/refop.py)
OUT=$("$@")
LOAD1=$(cut -d' ' -f1 /proc/loadavg)
BUSY=$(ps -eo pcpu,comm --sort=-pcpu | awk 'NR>1 && $1>20 {printf "%s(%s) ", $2, $1}')
echo "{\"label\":\"$LABEL\",\"time\":\"$(date +%T)\",\"refop_per_s\":$REF,\"load_before\":$LOAD0,\"load_after\":$LOAD1,\"busy\":\"$BUSY\",\"result\":$OUT}" | tee -a results.jsonl
