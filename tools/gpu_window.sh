#!/usr/bin/env bash
# One GPU window in one call: the reproduction queue first, then the speed rows with the time
# that is left, all records in one archive.
#
#   bash tools/gpu_window.sh OUT_DIR [WINDOW_S]        # WINDOW_S: the whole call, default 580
#
# Writes OUT_DIR/window.tar.gz (unpack into results/: tar -xzf window.tar.gz -C results) holding
# <gpu>_<date>/reproduction/... (tools/reproduce.py) and <gpu>_<date>/speed_<HHMM>/...
# (benchmarks/window.py); the tar is rewritten after each part, so a call killed at its limit
# still leaves what was done. Keep its output: `... 2>&1 | tee OUT_DIR/window.log`. On the device
# machine, run
# tools/prepare_gpu_window.sh here first and carry .gpu: it brings the wheels the machine lacks
# and the JPEG copy of CIFAR-10, decoded there. Elsewhere CIFAR_DIR names a folder of the official
# binary CIFAR-10 and DATA_LABEL says what it is. QUEUE and SPEED_ROWS choose the test queue
# and rows of a dry run on a CPU; RESULTS, the committed results that say what is done.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: bash tools/gpu_window.sh OUT_DIR [WINDOW_S]" >&2
  exit 2
fi
out="$(realpath -m -- "$1")"
window="${2:-580}"
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
mkdir -p "$out"
stage="$(mktemp -d)"
pack() { tar -czf "$out/window.tar.gz" -C "$stage" .; }

if [[ -d .gpu/wheels ]]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu_window_site \
    .gpu/wheels/*.whl
  export PYTHONPATH="/tmp/gpu_window_site${PYTHONPATH:+:$PYTHONPATH}"
fi
data="${CIFAR_DIR:-/tmp/cifar10_jpeg}"
label="${DATA_LABEL:-CIFAR-10 (JPEG copy)}"
if [[ -z "${CIFAR_DIR:-}" && ! -d "$data/cifar-10-batches-bin" ]]; then
  "$python" .gpu/tools/cifar10_jpeg.py --out "$data"
fi
command -v nvidia-smi > /dev/null && nvidia-smi -L

folder="$("$python" -m tools.reproduce where)"
# The queue gets the window less the minimum the speed rows and the packing need; never 0, which
# would be no limit.
budget=$((window - SECONDS - 90))
if ((budget >= 60)); then
  "$python" -m tools.reproduce run --queue "${QUEUE:-paper}" --results "${RESULTS:-results}" \
    --data_dir "$data" --data_label "$label" --out_dir "$stage" --budget_s "$budget" ||
    echo "gpu_window: the queue failed; the speed rows next"
  pack
fi

left=$((window - SECONDS - 20))
if ((left >= 30)); then
  "$python" -m benchmarks.window --rows "${SPEED_ROWS:-gpu}" --results "${RESULTS:-results}" \
    --budget_s "$left" --out_dir "$stage/$folder/speed_$(date -u +%H%M)" ||
    echo "gpu_window: the speed rows failed"
fi
pack
echo "gpu_window: $out/window.tar.gz after $SECONDS s:"
tar -tzf "$out/window.tar.gz" | sed -n '1,60p'
